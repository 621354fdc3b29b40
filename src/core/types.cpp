#include "wideattn/status.h"
#include "wideattn/types.h"

namespace wideattn {

const char* to_string(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::fp8_e4m3: return "fp8_e4m3";
  }
  return "unknown dtype";
}

const char* to_string(Backend backend) {
  switch (backend) {
    case Backend::cpu: return "cpu";
    case Backend::cuda: return "cuda";
  }
  return "unknown backend";
}

const char* to_string(Kernel kernel) {
  switch (kernel) {
    case Kernel::automatic: return "automatic";
    case Kernel::single_pass: return "single_pass";
    case Kernel::two_pass: return "two_pass";
    case Kernel::prefill_unfused: return "prefill_unfused";
    case Kernel::prefill_fused: return "prefill_fused";
  }
  return "unknown kernel";
}

const char* to_string(StatusCode code) {
  switch (code) {
    case StatusCode::ok: return "ok";
    case StatusCode::invalid_argument: return "invalid_argument";
    case StatusCode::unsupported: return "unsupported";
    case StatusCode::out_of_memory: return "out_of_memory";
    case StatusCode::backend_unavailable: return "backend_unavailable";
    case StatusCode::internal: return "internal";
  }
  return "unknown status";
}

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::fp8_e4m3: return 1;
    default: return 2;
  }
}

}  // namespace wideattn
