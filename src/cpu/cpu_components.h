// The CPU backend's components and kernels, each in its own file.
#pragma once

#include "core/backend.h"
#include "cpu/aligned_buffer.h"

namespace wideattn::detail::cpu {

// Scratch for converting matmul operands to f32 (kept apart from the Context's workspace, which
// the prefill pipeline holds across the matmul calls).
struct MatmulScratch {
  AlignedBuffer a, b, d;
};

void matmul(const MatmulArguments& args, MatmulScratch& scratch);     // matmul.cpp
void softmax(const SoftmaxArguments& args);                           // softmax.cpp
void scatter_scores(const ScatterScoresArguments& args);              // scatter.cpp
void scatter_values(const ScatterValuesArguments& args);              // scatter.cpp
void recompute_nonfinite_products(const MatmulArguments& pv);         // nonfinite_products.cpp
void gather_kv_rows(const GatherKvArguments& args);                   // gather_kv.cpp
void merge_states(const MergeStatesArguments& args);                  // merge_states.cpp
void write_kv(const WriteKvArguments& args);                          // write_kv.cpp

// single_pass / two_pass decode (decode.cpp). `workspace` holds decode_workspace_layout bytes.
void decode(const AttentionProblem& problem, const Plan& plan, void* workspace,
            AlignedBuffer& thread_scratch);

DeviceInfo query_device_info();  // device_info.cpp

}  // namespace wideattn::detail::cpu
