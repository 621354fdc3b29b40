// Arrays handed over from Python through DLPack (or the buffer protocol), without copies, and the
// checks that turn a wrong dtype, shape, device or stride into a TypeError/ValueError naming the
// argument. Strides are in elements, as DLPack gives them.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <string>
#include <vector>

#include "wideattn/types.h"

namespace wideattn::python {

namespace nb = nanobind;

// Where an array lives, as wideattn sees it.
struct Device {
  Backend backend = Backend::cpu;
  int index = 0;  // CUDA ordinal; 0 on the CPU
  bool operator==(const Device& o) const { return backend == o.backend && index == o.index; }
  std::string str() const;
};

// Element types the arrays may hold. Floating types map onto wideattn::DType; fp8_e4m3 (OCP
// E4M3FN) is a KV cache storage type only.
enum class Element { f32, f16, bf16, fp8_e4m3, i32, other };

// One imported array: the DLPack view, kept alive for the duration of the call.
class Array {
 public:
  Array() = default;
  // Imports `object` (None gives an absent Array). `writable` rejects read-only arrays.
  // `u16_is_bf16` reads uint16 elements as bfloat16 (NumPy arrays of ml_dtypes.bfloat16 are
  // handed over as uint16 views, since NumPy's DLPack export has no bfloat16). `u8_is_fp8` reads
  // uint8 elements as fp8 e4m3 bytes (kv_cache_dtype='fp8_e4m3', NumPy ml_dtypes.float8_e4m3fn
  // arrays' uint8 views); DLPack's float8_e4m3fn (PyTorch's torch.float8_e4m3fn) is fp8 anyway.
  Array(nb::handle object, const char* function, const char* name, bool writable,
        bool u16_is_bf16, bool u8_is_fp8 = false);

  bool present() const { return present_; }
  const char* name() const { return name_; }
  int64_t ndim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t shape(int64_t i) const { return shape_[static_cast<size_t>(i < 0 ? i + ndim() : i)]; }
  int64_t stride(int64_t i) const { return strides_[static_cast<size_t>(i < 0 ? i + ndim() : i)]; }
  void* data() const { return data_; }
  Element element() const { return element_; }
  std::string dtype_name() const { return dtype_name_; }
  const Device& device() const { return device_; }
  std::string shape_str() const;
  bool empty() const;  // some dimension is 0 (then strides mean nothing)

  // Checks; each throws TypeError/ValueError naming the function and the argument.
  void require_ndim(int64_t ndim, const char* layout) const;
  void require_dim(int64_t i, int64_t expected, const std::string& what) const;
  void require_float(const char* expectation = "float32, float16 or bfloat16") const;
  void require_element(Element e, const char* expectation) const;
  void require_same_dtype(const Array& other) const;
  void require_device(const Device& device, const Array& reference) const;
  void require_last_contiguous() const;  // last dimension has stride 1 (when it has > 1 entry)
  void require_contiguous_1d() const;     // 1-D array with stride 1
  void require_nonnegative_strides() const;

  DType dtype() const;  // wideattn DType; requires a float element (f32, f16, bf16)
  bool is_fp8() const { return element_ == Element::fp8_e4m3; }

 private:
  nb::ndarray<nb::ro> read_;
  nb::ndarray<> write_;
  bool present_ = false;
  const char* function_ = "";
  const char* name_ = "";
  void* data_ = nullptr;
  Element element_ = Element::other;
  std::string dtype_name_;
  Device device_;
  std::vector<int64_t> shape_, strides_;
};

// Element offset span of an array (largest reachable element + 1), for address checks.
int64_t extent_elements(const Array& a);
std::size_t element_size(Element e);

[[noreturn]] void throw_type_error(const std::string& message);
[[noreturn]] void throw_value_error(const std::string& message);

}  // namespace wideattn::python
