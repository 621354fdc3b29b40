// ldmatrix: four 8x8 matrices of 16-bit elements (or of byte pairs) from shared memory into the
// mma/wgmma register fragment layout, one 16-byte row address per lane (lanes 8i..8i+7 give
// matrix i's rows). Thread t receives, of each matrix, the 32-bit word at row t / 4, columns
// 2 (t % 4) and + 1; the .trans form the word at column t / 4 of rows 2 (t % 4) and + 1.
// Device code; include from .cu files only.
#pragma once

#include <cstdint>

namespace wideattn::cuda {

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

}  // namespace wideattn::cuda
