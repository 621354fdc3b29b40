#include "cuda/primitives/tensor_map.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "core/error.h"

namespace wideattn::cuda {
namespace {

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*,
                                 CUtensorMapInterleave, CUtensorMapSwizzle, CUtensorMapL2promotion,
                                 CUtensorMapFloatOOBfill);

// cuTensorMapEncodeTiled through the runtime's driver entry point: the library links no libcuda,
// so it loads on machines without a GPU driver.
EncodeTiled encode_function() {
  static const EncodeTiled function = [] {
    void* pointer = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    const cudaError_t status = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &pointer, 12000,
                                                                cudaEnableDefault, &found);
    if (status != cudaSuccess || found != cudaDriverEntryPointSuccess) pointer = nullptr;
    return reinterpret_cast<EncodeTiled>(pointer);
  }();
  if (!function) {
    detail::throw_error(StatusCode::internal, "tensor maps: the driver has no cuTensorMapEncodeTiled");
  }
  return function;
}

}  // namespace

CUtensorMap encode_tensor_map(const void* base, TensorMapElement element, const int64_t dims[4],
                              const int64_t strides[3], const uint32_t box[4], const char* what) {
  const int64_t bytes = element == TensorMapElement::u8 ? 1 : 2;
  const CUtensorMapDataType type = element == TensorMapElement::u8     ? CU_TENSOR_MAP_DATA_TYPE_UINT8
                                   : element == TensorMapElement::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                                       : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  CUtensorMap map;
  cuuint64_t size[4], stride[3];
  cuuint32_t box_size[4], element_stride[4] = {1, 1, 1, 1};
  for (int i = 0; i < 4; ++i) {
    size[i] = static_cast<cuuint64_t>(std::max<int64_t>(dims[i], 1));
    box_size[i] = box[i];
  }
  for (int i = 0; i < 3; ++i) {
    // A dimension of extent 1 may have any stride; TMA still wants a multiple of 16 bytes.
    int64_t s = strides[i];
    if (dims[i + 1] <= 1 && (s <= 0 || (s * bytes) % 16 != 0)) s = 16 / bytes;
    stride[i] = static_cast<cuuint64_t>(s * bytes);
  }
  const CUresult result = encode_function()(
      &map, type, 4, const_cast<void*>(base), size, stride, box_size, element_stride, CU_TENSOR_MAP_INTERLEAVE_NONE,
      CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (result != CUDA_SUCCESS) {
    detail::throw_error(StatusCode::internal, std::string("cuTensorMapEncodeTiled(") + what +
                                                  ") failed with CUresult " +
                                                  std::to_string(static_cast<int>(result)));
  }
  return map;
}

int32_t encode_kv_tensor_maps(const AttentionProblem& p, TensorMapElement element, uint32_t box_columns,
                              int32_t tile_rows, CUtensorMap& k_map, CUtensorMap& v_map) {
  const KvCache& kv = p.kv;
  const bool paged = kv.paged();
  const int64_t dims[4] = {p.head_dim, paged ? kv.page_size : kv.capacity, p.kv_heads,
                           paged ? kv.num_pages : p.batch};
  const int32_t box_rows = paged ? std::min(tile_rows, kv.page_size) : tile_rows;
  const uint32_t box[4] = {box_columns, static_cast<uint32_t>(box_rows), 1, 1};
  const int64_t k_strides[3] = {kv.k_token_stride, kv.k_head_stride, paged ? kv.k_page_stride : kv.k_sequence_stride};
  const int64_t v_strides[3] = {kv.v_token_stride, kv.v_head_stride, paged ? kv.v_page_stride : kv.v_sequence_stride};
  k_map = encode_tensor_map(kv.k, element, dims, k_strides, box, "k");
  v_map = encode_tensor_map(kv.v, element, dims, v_strides, box, "v");
  return box_rows;
}

}  // namespace wideattn::cuda
