#include "cuda/primitives/sanitizer_marks.h"

#include <nvtx3/nvToolsExt.h>
#include <nvtx3/nvToolsExtMemCudaRt.h>

#include <vector>

#include "core/debug_options.h"

namespace wideattn::cuda {

void mark_rows_initialized(const void* base, int64_t batches, int64_t batch_stride, int64_t rows,
                           int64_t row_stride, std::size_t row_bytes, cudaStream_t stream) {
  if (!detail::mark_library_outputs() || batches <= 0 || rows <= 0 || row_bytes == 0) return;
  static const nvtxDomainHandle_t domain = nvtxDomainCreateA("wideattn");
  std::vector<nvtxMemVirtualRangeDesc_t> ranges;
  ranges.reserve(static_cast<std::size_t>(batches * rows));
  const auto* bytes = static_cast<const char*>(base);
  for (int64_t b = 0; b < batches; ++b) {
    for (int64_t r = 0; r < rows; ++r) {
      ranges.push_back(nvtxMemVirtualRangeDesc_t{row_bytes, bytes + b * batch_stride + r * row_stride});
    }
  }
  nvtxMemMarkInitializedBatch_t batch = {};
  batch.extCompatID = NVTX_EXT_COMPATID_MEM;
  batch.structSize = sizeof(batch);
  batch.regionType = NVTX_MEM_TYPE_VIRTUAL_ADDRESS;
  batch.regionDescCount = ranges.size();
  batch.regionDescElementSize = sizeof(nvtxMemVirtualRangeDesc_t);
  batch.regionDescElements = ranges.data();
  nvtxMemCudaMarkInitialized(domain, stream, 0, &batch);
}

}  // namespace wideattn::cuda
