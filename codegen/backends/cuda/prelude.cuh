// graphcore CUDA prelude: the fixed device code every generated module includes.
// Kernels are launched through GC_LAUNCH(kernel, grid, block, stream, args...): a real launch
// under nvcc; with GC_CUDA_EMULATION (backend 'cuda-emu', g++) the emulation header runs it on CPU.
#pragma once
#include <cstdint>
#ifdef GC_CUDA_EMULATION
#include "gc_emulation.h"
#else
#include <cuda_runtime.h>
#define GC_LAUNCH(kernel, grid, block, stream, ...) kernel<<<grid, block, 0, stream>>>(__VA_ARGS__)
#endif
#include <math.h>

template <typename T> __device__ __forceinline__ T gc_relu(T x) { return x > T(0) ? x : T(0); }
template <typename T> __device__ __forceinline__ T gc_leaky_relu(T x, T s) { return x > T(0) ? x : s * x; }
template <typename T> __device__ __forceinline__ T gc_elu(T x, T a) { return x > T(0) ? x : a * (exp(x) - T(1)); }
template <typename T> __device__ __forceinline__ T gc_gelu(T x) { return T(0.5) * x * (T(1) + erf(x * T(0.70710678118654752))); }
template <typename T> __device__ __forceinline__ T gc_sigmoid(T x) { return T(1) / (T(1) + exp(-x)); }
template <typename T> __device__ __forceinline__ T gc_d_relu(T x) { return x > T(0) ? T(1) : T(0); }
template <typename T> __device__ __forceinline__ T gc_d_leaky_relu(T x, T s) { return x > T(0) ? T(1) : s; }
template <typename T> __device__ __forceinline__ T gc_d_elu(T x, T a) { return x > T(0) ? T(1) : a * exp(x); }
template <typename T> __device__ __forceinline__ T gc_d_gelu(T x) {
  return T(0.5) * (T(1) + erf(x * T(0.70710678118654752))) + x * exp(T(-0.5) * x * x) * T(0.39894228040143268);
}
template <typename T> __device__ __forceinline__ T gc_inf_to_zero(T x) { return isinf(x) ? T(0) : x; }

// The segment (type) of row r: the last t with ptr[t] <= r (binary search over the prefix sums).
__device__ __forceinline__ int64_t gc_segment_of(const int64_t* ptr, int64_t num_segments, int64_t r) {
  int64_t lo = 0, hi = num_segments;  // invariant: ptr[lo] <= r < ptr[hi]
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (ptr[mid] <= r) lo = mid; else hi = mid;
  }
  return lo;
}

static inline unsigned gc_blocks(int64_t work, int threads) {
  const int64_t blocks = (work + threads - 1) / threads;
  return (unsigned)(blocks < 1 ? 1 : (blocks > 65535 ? 65535 : blocks));
}
