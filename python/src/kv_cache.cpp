#include "kv_cache.h"

#include <nanobind/stl/string.h>

#include <cmath>
#include <string>

namespace wideattn::python {
namespace {

std::string py_type_name(nb::handle h) {
  return nb::cast<std::string>(nb::str(h.type().attr("__qualname__")));
}

std::string py_repr(nb::handle h) { return nb::cast<std::string>(nb::repr(h)); }

std::string float_text(double value) { return py_repr(nb::float_(value)); }

// One scale: None (returns 0 values, *pointer null), a Python float (1 value, host memory) or a
// float32 array of 1 or kv_heads values on the cache's device.
int64_t read_scale(const char* f, nb::handle h, const char* name, const Array& cache, int64_t kv_heads,
                   Array* array, float* value, const float** pointer) {
  *pointer = nullptr;
  if (!h.is_valid() || h.is_none()) return 0;
  PyObject* o = h.ptr();
  if (PyBool_Check(o)) {
    throw_type_error(std::string(f) + ": " + name + " must be a float or a float32 array, got bool");
  }
  if (PyFloat_Check(o) || PyLong_Check(o)) {
    const double d = PyFloat_AsDouble(o);
    if (d == -1.0 && PyErr_Occurred()) {
      PyErr_Clear();
      throw_value_error(std::string(f) + ": " + name + " = " + py_repr(h) + " does not fit in a float");
    }
    const float s = static_cast<float>(d);
    if (!(std::isfinite(s) && s > 0)) {
      throw_value_error(std::string(f) + ": " + name + " = " + float_text(d) +
                        ", expected a finite value > 0 (a stored value x stands for x * " + name + ")");
    }
    if (cache.device().backend != Backend::cpu) {
      throw_type_error(std::string(f) + ": " + name + " is a Python float but the caches are on " +
                       cache.device().str() + ": pass a float32 array on that device (the wideattn "
                       "package's functions make one from a float)");
    }
    *value = s;
    *pointer = value;
    return 1;
  }
  *array = Array(h, f, name, false, false);
  const Array& a = *array;
  a.require_element(Element::f32, "float32");
  a.require_device(cache.device(), cache);
  int64_t n = 1;
  if (a.ndim() == 1 && (a.shape(0) == 1 || a.shape(0) == kv_heads)) {
    n = a.shape(0);
    a.require_last_contiguous();
  } else if (a.ndim() != 0) {
    throw_value_error(std::string(f) + ": " + name + " has shape " + a.shape_str() +
                      ", expected () or (1,) (one scale for the cache) or (kv_heads,) = (" +
                      std::to_string(kv_heads) + ",) (one per KV head)");
  }
  if (cache.device().backend == Backend::cpu) {  // host memory: check the values here
    const float* values = static_cast<const float*>(a.data());
    for (int64_t i = 0; i < n; ++i) {
      if (!(std::isfinite(values[i]) && values[i] > 0)) {
        throw_value_error(std::string(f) + ": " + name + (a.ndim() ? "[" + std::to_string(i) + "]" : "") +
                          " = " + float_text(values[i]) + ", expected a finite value > 0");
      }
    }
  }
  *pointer = static_cast<const float*>(a.data());
  return n;
}

}  // namespace

bool kv_cache_dtype_is_fp8(const char* f, nb::handle h) {
  if (!h.is_valid() || h.is_none()) return false;
  if (!PyUnicode_Check(h.ptr())) {
    throw_type_error(std::string(f) + ": kv_cache_dtype must be a str ('auto', 'fp8' or 'fp8_e4m3'), got " +
                     py_type_name(h));
  }
  Py_ssize_t size = 0;
  const char* s = PyUnicode_AsUTF8AndSize(h.ptr(), &size);
  if (s == nullptr) throw nb::python_error();
  const std::string name(s, static_cast<size_t>(size));
  if (name == "auto") return false;
  if (name == "fp8" || name == "fp8_e4m3") return true;
  if (name == "fp8_e5m2") {
    throw_value_error(std::string(f) + ": kv_cache_dtype = 'fp8_e5m2': wideattn's fp8 KV cache is e4m3 "
                      "(OCP E4M3FN) only; expected 'auto', 'fp8' or 'fp8_e4m3'");
  }
  throw_value_error(std::string(f) + ": kv_cache_dtype = " + py_repr(h) +
                    ", expected 'auto' (the caches' dtype decides), 'fp8' or 'fp8_e4m3' (uint8 caches "
                    "hold e4m3 bytes)");
}

bool check_cache_dtypes(const char* f, const Array& k, const Array& v, const Array& values,
                        bool declared_fp8) {
  if (k.is_fp8() || v.is_fp8()) {
    v.require_same_dtype(k);  // names both dtypes when only one is fp8
    return true;
  }
  if (declared_fp8) {
    throw_type_error(std::string(f) + ": kv_cache_dtype says fp8 e4m3 but k_cache has dtype " +
                     k.dtype_name() + ", expected float8_e4m3fn or uint8 (e4m3 bytes)");
  }
  for (const Array* c : {&k, &v}) {
    if (c->dtype_name() == "uint8") {
      throw_type_error(std::string(f) + ": " + c->name() + " has dtype uint8: for a cache of fp8 e4m3 "
                       "bytes pass kv_cache_dtype='fp8_e4m3' (or a float8_e4m3fn array); otherwise it "
                       "must have " + values.name() + "'s dtype " + values.dtype_name());
    }
    if (c->dtype_name().rfind("float8", 0) == 0) {
      throw_type_error(std::string(f) + ": " + c->name() + " has dtype " + c->dtype_name() +
                       ": wideattn's fp8 KV cache is float8_e4m3fn (OCP E4M3FN) only; a 16/32-bit "
                       "cache has " + values.name() + "'s dtype " + values.dtype_name());
    }
  }
  k.require_same_dtype(values);
  v.require_same_dtype(values);
  return false;
}

void KvScales::read(const char* f, nb::handle k_scale, nb::handle v_scale, const Array& k_cache,
                    int64_t kv_heads, bool fp8, KvCache* kv) {
  const bool k_given = k_scale.is_valid() && !k_scale.is_none();
  const bool v_given = v_scale.is_valid() && !v_scale.is_none();
  if (!fp8) {
    if (k_given || v_given) {
      throw_value_error(std::string(f) + ": " + (k_given ? "k_scale" : "v_scale") +
                        " is given but k_cache has dtype " + k_cache.dtype_name() +
                        ": scales belong to an fp8 cache (float8_e4m3fn, or uint8 with "
                        "kv_cache_dtype='fp8_e4m3'); a 16/32-bit cache holds its values as they are");
    }
    return;
  }
  const int64_t nk = read_scale(f, k_scale, "k_scale", k_cache, kv_heads, &k_, &k_value_, &kv->k_scale);
  const int64_t nv = read_scale(f, v_scale, "v_scale", k_cache, kv_heads, &v_, &v_value_, &kv->v_scale);
  const bool per_head = kv_heads > 1 && (nk == kv_heads || nv == kv_heads);
  if (per_head && (nk == 1 || nv == 1)) {
    const bool k_per_head = nk == kv_heads;
    throw_value_error(std::string(f) + ": " + (k_per_head ? "k_scale" : "v_scale") + " has one value per KV head (" +
                      std::to_string(kv_heads) + ") but " + (k_per_head ? "v_scale" : "k_scale") +
                      " has one for the whole cache: give both per head or both per cache");
  }
  kv->fp8 = true;
  kv->scales_per_head = per_head;
}

}  // namespace wideattn::python
