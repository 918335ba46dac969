// graphcore CPU prelude: the fixed C++ every generated translation unit includes.
// Activations and their derivatives, and the register-blocked GEMM micro-kernel of the GEMM template.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <omp.h>

template <typename T> static inline T gc_relu(T x) { return x > T(0) ? x : T(0); }
template <typename T> static inline T gc_leaky_relu(T x, T s) { return x > T(0) ? x : s * x; }
template <typename T> static inline T gc_elu(T x, T a) { return x > T(0) ? x : a * (std::exp(x) - T(1)); }
template <typename T> static inline T gc_gelu(T x) { return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752))); }
template <typename T> static inline T gc_sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }
template <typename T> static inline T gc_d_relu(T x) { return x > T(0) ? T(1) : T(0); }
template <typename T> static inline T gc_d_leaky_relu(T x, T s) { return x > T(0) ? T(1) : s; }
template <typename T> static inline T gc_d_elu(T x, T a) { return x > T(0) ? T(1) : a * std::exp(x); }
template <typename T> static inline T gc_d_gelu(T x) {
  return T(0.5) * (T(1) + std::erf(x * T(0.70710678118654752))) + x * std::exp(T(-0.5) * x * x) * T(0.39894228040143268);
}
template <typename T> static inline T gc_inf_to_zero(T x) { return std::isinf(x) ? T(0) : x; }

// The segment (type) of row r: the last t with ptr[t] <= r, by binary search over the pointer.
static inline int64_t gc_segment_of(const int64_t* ptr, int64_t num_segments, int64_t r) {
  return (int64_t)(std::upper_bound(ptr, ptr + num_segments + 1, r) - ptr) - 1;
}

// c[q, 0:N] = a[q][0:K] @ w[0:K, 0:N] for q < mr (mr <= MR), w row-major with leading dimension N.
// Full MR x NR tiles keep their accumulators in vector registers; edges take the plain loop.
template <typename T>
static inline void gc_gemm_rows(int mr, const T* const* a, const T* w, int64_t K, int64_t N, T* c) {
  constexpr int MR = 6;
  constexpr int NR = 128 / (int)sizeof(T);
  if (N < 8) {  // narrow outputs (attention scores): dot products along k vectorise better
    for (int q = 0; q < mr; ++q)
      for (int64_t n = 0; n < N; ++n) {
        T s = T(0);
#pragma omp simd reduction(+ : s)
        for (int64_t k = 0; k < K; ++k) s += a[q][k] * w[k * N + n];
        c[q * N + n] = s;
      }
    return;
  }
  int64_t n0 = 0;
  if (mr == MR) {
    for (; n0 + NR <= N; n0 += NR) {
      T acc[MR][NR];
      for (int q = 0; q < MR; ++q)
        for (int j = 0; j < NR; ++j) acc[q][j] = T(0);
      for (int64_t k = 0; k < K; ++k) {
        const T* wk = w + k * N + n0;
#pragma GCC unroll 6
        for (int q = 0; q < MR; ++q) {
          const T av = a[q][k];
#pragma omp simd
          for (int j = 0; j < NR; ++j) acc[q][j] += av * wk[j];
        }
      }
      for (int q = 0; q < MR; ++q)
        for (int j = 0; j < NR; ++j) c[q * N + n0 + j] = acc[q][j];
    }
  }
  for (int q = 0; q < mr; ++q) {
    T* cq = c + q * N;
    for (int64_t n = n0; n < N; ++n) cq[n] = T(0);
    for (int64_t k = 0; k < K; ++k) {
      const T av = a[q][k];
      const T* wk = w + k * N;
#pragma omp simd
      for (int64_t n = n0; n < N; ++n) cq[n] += av * wk[n];
    }
  }
}

// Weight-gradient tile of the outer-product template: acc[q, j] = sum_r a[r][k0 + q] * b[r][j0 + j]
// over the rows r < count of one chunk of a segment (each element summed in row order, so the
// result does not depend on the thread count), stored (or, for later chunks, added) at (k0, j0) of
// a row-major [K, N] weight, or of its [N, K] transpose. Full KR x NR tiles keep their
// accumulators in vector registers.
template <typename T, int KR, int NR>
static inline void gc_outer_full(int64_t count, const T* const* a, const T* const* b, int64_t k0, int64_t j0,
                                 T* out, int64_t K, int64_t N, bool transposed, bool add) {
  T acc[KR][NR];
  for (int q = 0; q < KR; ++q)
    for (int j = 0; j < NR; ++j) acc[q][j] = T(0);
  for (int64_t r = 0; r < count; ++r) {
    const T* ar = a[r] + k0;
    const T* br = b[r] + j0;
#pragma GCC unroll 4
    for (int q = 0; q < KR; ++q) {
      const T av = ar[q];
#pragma omp simd
      for (int j = 0; j < NR; ++j) acc[q][j] += av * br[j];
    }
  }
  for (int q = 0; q < KR; ++q)
    for (int j = 0; j < NR; ++j) {
      T& o = transposed ? out[(j0 + j) * K + k0 + q] : out[(k0 + q) * N + j0 + j];
      o = add ? o + acc[q][j] : acc[q][j];
    }
}

template <typename T, int NR>
static inline void gc_outer_edge(int64_t count, const T* const* a, const T* const* b, int64_t k0, int kr, int64_t j0,
                                 int nr, T* out, int64_t K, int64_t N, bool transposed, bool add) {
  for (int q = 0; q < kr; ++q) {
    T row[NR] = {};  // nr <= NR: gc_outer cuts edge tiles to the register tile's width
    for (int64_t r = 0; r < count; ++r) {
      const T av = a[r][k0 + q];
      const T* br = b[r] + j0;
#pragma omp simd
      for (int j = 0; j < nr; ++j) row[j] += av * br[j];
    }
    for (int j = 0; j < nr; ++j) {
      T& o = transposed ? out[(j0 + j) * K + k0 + q] : out[(k0 + q) * N + j0 + j];
      o = add ? o + row[j] : row[j];
    }
  }
}

// Rows k0..k1 of the [K, N] weight gradient over one chunk of a segment's rows (``add``: add to
// what earlier chunks stored): register tiles of KR x NR, edge tiles by the plain loop.
template <typename T>
static inline void gc_outer(int64_t count, const T* const* a, const T* const* b, int64_t k0, int64_t k1,
                            T* out, int64_t K, int64_t N, bool transposed, bool add) {
  constexpr int KR = 4;
  constexpr int NR = 128 / (int)sizeof(T);
  for (int64_t kq = k0; kq < k1; kq += KR) {
    const int kr = (int)std::min<int64_t>(KR, k1 - kq);
    for (int64_t j0 = 0; j0 < N; j0 += NR) {
      const int nr = (int)std::min<int64_t>(NR, N - j0);
      if (kr == KR && nr == NR)
        gc_outer_full<T, KR, NR>(count, a, b, kq, j0, out, K, N, transposed, add);
      else
        gc_outer_edge<T, NR>(count, a, b, kq, kr, j0, nr, out, K, N, transposed, add);
    }
  }
}

