// The fp8 KV cache's arguments from Python (include/wideattn/problem.h, KvCache::fp8):
// kv_cache_dtype (vLLM's option name: "auto", "fp8", "fp8_e4m3"), the caches' dtype checks, and
// k_scale / v_scale (None, a Python float, or a float32 array of one value or one per KV head).
#pragma once

#include "arrays.h"
#include "wideattn/problem.h"

namespace wideattn::python {

// Whether kv_cache_dtype declares a cache of fp8 e4m3 bytes: None or "auto": no (the caches'
// own dtype decides; float8_e4m3fn is fp8); "fp8" or "fp8_e4m3": yes, and uint8 caches are read
// as e4m3 bytes. Anything else raises (fp8_e5m2 with the reason).
bool kv_cache_dtype_is_fp8(const char* function, nb::handle kv_cache_dtype);

// Whether the imported caches are fp8 (both of them; raises when only one is, when
// kv_cache_dtype declared fp8 and a cache is not, and for a 16/32-bit cache whose dtype is not
// `values`'s: q for attention, k_new for write_kv).
bool check_cache_dtypes(const char* function, const Array& k_cache, const Array& v_cache,
                        const Array& values, bool declared_fp8);

// k_scale and v_scale as the library takes them. Holds the imported arrays (alive as long as
// this object) and Python floats' values (host memory: the CPU backend only; the Python
// package turns a float for a CUDA cache into a device array). `kv` points into this object:
// keep it in place (it cannot be copied or moved) as long as `kv` is used.
class KvScales {
 public:
  KvScales() = default;
  KvScales(const KvScales&) = delete;
  KvScales& operator=(const KvScales&) = delete;

  // Reads both scales of a cache with `kv_heads` KV heads (`k_cache` gives the device and the
  // dtype for the messages) and sets kv->fp8, k_scale, v_scale and scales_per_head. A scale
  // given for a cache that is not fp8 raises ValueError naming it.
  void read(const char* function, nb::handle k_scale, nb::handle v_scale, const Array& k_cache,
            int64_t kv_heads, bool fp8, KvCache* kv);

 private:
  Array k_, v_;
  float k_value_ = 1.0f, v_value_ = 1.0f;
};

}  // namespace wideattn::python
