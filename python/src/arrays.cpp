#include "arrays.h"

#include <nanobind/stl/string.h>

#include <sstream>

namespace wideattn::python {
namespace {

// DLPack device types (dlpack.h): kDLCPU, kDLCUDA, kDLCUDAHost (pinned), kDLCUDAManaged.
constexpr int kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13;

std::string python_type_name(nb::handle object) {
  return nb::cast<std::string>(nb::str(object.type().attr("__qualname__")));
}

// The type of an object that did not import, with its dtype when it has one (e.g. a NumPy
// bfloat16 array, which has no DLPack export, handed over where its uint16 view was due).
std::string described(nb::handle object) {
  std::string text = python_type_name(object);
  if (PyObject_HasAttrString(object.ptr(), "dtype")) {
    nb::object dtype = nb::steal(PyObject_GetAttrString(object.ptr(), "dtype"));
    if (dtype.is_valid()) {
      nb::object name = nb::steal(PyObject_Str(dtype.ptr()));
      if (name.is_valid()) text += " of dtype " + nb::cast<std::string>(name);
    }
    PyErr_Clear();
  }
  return text;
}

Element element_of(nb::dlpack::dtype t, bool u16_is_bf16, bool u8_is_fp8, std::string* name) {
  using nb::dlpack::dtype_code;
  const auto code = static_cast<dtype_code>(t.code);
  if (t.lanes == 1) {
    // DLPack 1.1's kDLFloat8_e4m3fn (nanobind's dtype_code::Float8_E4M3FN): PyTorch exports
    // torch.float8_e4m3fn as it.
    if (code == dtype_code::Float8_E4M3FN && t.bits == 8) { *name = "float8_e4m3fn"; return Element::fp8_e4m3; }
    if (code == dtype_code::UInt && t.bits == 8 && u8_is_fp8) { *name = "float8_e4m3fn (as uint8)"; return Element::fp8_e4m3; }
    if (code == dtype_code::Float && t.bits == 32) { *name = "float32"; return Element::f32; }
    if (code == dtype_code::Float && t.bits == 16) { *name = "float16"; return Element::f16; }
    if (code == dtype_code::Bfloat && t.bits == 16) { *name = "bfloat16"; return Element::bf16; }
    if (code == dtype_code::UInt && t.bits == 16 && u16_is_bf16) { *name = "bfloat16"; return Element::bf16; }
    if (code == dtype_code::Int && t.bits == 32) { *name = "int32"; return Element::i32; }
  }
  const char* kind = "unknown";
  switch (code) {
    case dtype_code::Int: kind = "int"; break;
    case dtype_code::UInt: kind = "uint"; break;
    case dtype_code::Float: kind = "float"; break;
    case dtype_code::Bfloat: kind = "bfloat"; break;
    case dtype_code::Complex: kind = "complex"; break;
    case dtype_code::Bool: kind = "bool"; break;
    case dtype_code::Float8_E3M4: kind = "float8_e3m4"; break;
    case dtype_code::Float8_E4M3: kind = "float8_e4m3"; break;
    case dtype_code::Float8_E4M3B11FNUZ: kind = "float8_e4m3b11fnuz"; break;
    case dtype_code::Float8_E4M3FN: kind = "float8_e4m3fn"; break;
    case dtype_code::Float8_E4M3FNUZ: kind = "float8_e4m3fnuz"; break;
    case dtype_code::Float8_E5M2: kind = "float8_e5m2"; break;
    case dtype_code::Float8_E5M2FNUZ: kind = "float8_e5m2fnuz"; break;
    case dtype_code::Float8_E8M0FNU: kind = "float8_e8m0fnu"; break;
    default: break;
  }
  if (code >= dtype_code::Float8_E3M4 && code <= dtype_code::Float8_E8M0FNU && t.lanes == 1) {
    *name = kind;  // the name says the width
    return Element::other;
  }
  *name = std::string(kind) + std::to_string(t.bits) + (t.lanes != 1 ? "x" + std::to_string(t.lanes) : "");
  return Element::other;
}

}  // namespace

void throw_type_error(const std::string& message) {
  PyErr_SetString(PyExc_TypeError, message.c_str());
  throw nb::python_error();
}

void throw_value_error(const std::string& message) {
  PyErr_SetString(PyExc_ValueError, message.c_str());
  throw nb::python_error();
}

std::string Device::str() const {
  return backend == Backend::cpu ? std::string("cpu") : "cuda:" + std::to_string(index);
}

Array::Array(nb::handle object, const char* function, const char* name, bool writable,
             bool u16_is_bf16, bool u8_is_fp8)
    : function_(function), name_(name) {
  if (!object.is_valid() || object.is_none()) return;
  int device_type = 0, device_id = 0;
  nb::dlpack::dtype dt{};
  const int64_t* shape = nullptr;
  const int64_t* strides = nullptr;
  std::size_t ndim = 0;
  if (writable) {
    if (!nb::try_cast(object, write_, /*convert=*/false)) {
      throw_type_error(std::string(function) + ": " + name +
                       " must be a writable array (NumPy, PyTorch, JAX, CuPy or any DLPack "
                       "producer), got " + described(object) +
                       (nb::try_cast(object, read_, false) ? " that is read-only" : ""));
    }
    data_ = write_.data();
    device_type = write_.device_type();
    device_id = write_.device_id();
    dt = write_.dtype();
    ndim = write_.ndim();
    shape = write_.shape_ptr();
    strides = write_.stride_ptr();
  } else {
    if (!nb::try_cast(object, read_, /*convert=*/false)) {
      throw_type_error(std::string(function) + ": " + name +
                       " must be an array (NumPy, PyTorch, JAX, CuPy or any DLPack producer), got " +
                       described(object));
    }
    data_ = const_cast<void*>(static_cast<const void*>(read_.data()));
    device_type = read_.device_type();
    device_id = read_.device_id();
    dt = read_.dtype();
    ndim = read_.ndim();
    shape = read_.shape_ptr();
    strides = read_.stride_ptr();
  }
  present_ = true;
  shape_.assign(shape, shape + ndim);
  strides_.assign(strides, strides + ndim);
  element_ = element_of(dt, u16_is_bf16, u8_is_fp8, &dtype_name_);
  if (device_type == kDLCPU || device_type == kDLCUDAHost) {
    device_ = Device{Backend::cpu, 0};
  } else if (device_type == kDLCUDA || device_type == kDLCUDAManaged) {
    device_ = Device{Backend::cuda, device_id};
  } else {
    throw_value_error(std::string(function) + ": " + name + " is on DLPack device type " +
                      std::to_string(device_type) +
                      "; wideattn runs on CPU memory and CUDA devices");
  }
}

std::string Array::shape_str() const {
  std::ostringstream s;
  s << "(";
  for (std::size_t i = 0; i < shape_.size(); ++i) s << (i ? ", " : "") << shape_[i];
  s << (shape_.size() == 1 ? ",)" : ")");
  return s.str();
}

void Array::require_ndim(int64_t ndim, const char* layout) const {
  if (this->ndim() != ndim) {
    throw_value_error(std::string(function_) + ": " + name_ + " must have " +
                      std::to_string(ndim) + " dimensions " + layout + ", got shape " + shape_str());
  }
}

void Array::require_dim(int64_t i, int64_t expected, const std::string& what) const {
  if (shape(i) != expected) {
    throw_value_error(std::string(function_) + ": " + name_ + ".shape[" + std::to_string(i) +
                      "] = " + std::to_string(shape(i)) + ", expected " + std::to_string(expected) +
                      " (" + what + "); " + name_ + " has shape " + shape_str());
  }
}

void Array::require_float(const char* expectation) const {
  if (element_ != Element::f32 && element_ != Element::f16 && element_ != Element::bf16) {
    throw_type_error(std::string(function_) + ": " + name_ + " has dtype " + dtype_name_ +
                     ", expected " + expectation);
  }
}

void Array::require_element(Element e, const char* expectation) const {
  if (element_ != e) {
    throw_type_error(std::string(function_) + ": " + name_ + " has dtype " + dtype_name_ +
                     ", expected " + expectation);
  }
}

void Array::require_same_dtype(const Array& other) const {
  if (element_ != other.element_) {
    throw_type_error(std::string(function_) + ": " + name_ + " has dtype " + dtype_name_ +
                     " but " + other.name_ + " has dtype " + other.dtype_name_ +
                     "; they must match");
  }
}

void Array::require_device(const Device& device, const Array& reference) const {
  if (!(device_ == device)) {
    throw_value_error(std::string(function_) + ": " + name_ + " is on " + device_.str() +
                      " but " + reference.name_ + " is on " + device.str() +
                      "; every array must be on the same device");
  }
}

bool Array::empty() const {
  for (int64_t n : shape_) {
    if (n == 0) return true;
  }
  return false;
}

void Array::require_last_contiguous() const {
  if (ndim() > 0 && !empty() && shape(-1) > 1 && stride(-1) != 1) {
    throw_value_error(std::string(function_) + ": " + name_ +
                      "'s last dimension must be contiguous (stride 1), got stride " +
                      std::to_string(stride(-1)) + "; use .contiguous() or a layout whose last "
                      "dimension is dense");
  }
}

void Array::require_contiguous_1d() const {
  require_ndim(1, "[n]");
  require_last_contiguous();
}

void Array::require_nonnegative_strides() const {
  for (int64_t i = 0; i < ndim() && !empty(); ++i) {
    if (shape(i) > 1 && stride(i) < 0) {
      throw_value_error(std::string(function_) + ": " + name_ + " has a negative stride " +
                        std::to_string(stride(i)) + " in dimension " + std::to_string(i) +
                        "; wideattn needs non-negative strides");
    }
  }
}

DType Array::dtype() const {
  require_float();
  switch (element_) {
    case Element::f32: return DType::f32;
    case Element::f16: return DType::f16;
    default: return DType::bf16;
  }
}

std::size_t element_size(Element e) {
  switch (e) {
    case Element::f32: return 4;
    case Element::i32: return 4;
    case Element::f16: return 2;
    case Element::bf16: return 2;
    case Element::fp8_e4m3: return 1;
    default: return 1;
  }
}

int64_t extent_elements(const Array& a) {
  int64_t last = 0;
  for (int64_t i = 0; i < a.ndim(); ++i) {
    if (a.shape(i) == 0) return 0;
    last += (a.shape(i) - 1) * a.stride(i);
  }
  return last + 1;
}

}  // namespace wideattn::python
