// graphcore CPU prelude: the fixed C++ every generated translation unit includes.
// Activations and their derivatives, and the register-blocked GEMM micro-kernel of the GEMM template.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <omp.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// Math the vectoriser can inline. glibc's scalar expf/erff are calls that keep `#pragma omp simd`
// loops scalar: HGT's GELU and its derivative took 8.7 ms of a 61 ms training step on heco_acm.
// For float, exp is Cody-Waite reduction and Cephes' degree-6 polynomial (<= 1 ulp; -inf -> 0,
// +inf and overflow -> inf, NaN -> NaN), and erf is Abramowitz-Stegun 7.1.26 (absolute error
// < 5e-7, so GELU is within 2.5e-7 |x| of float64; PyTorch's own float GELU on CPU is within
// 1.2e-6 on [-6, 6]). Double keeps libm's.
namespace gc_math {
using std::log1p;
using std::tanh;

static inline float exp(float x) {
  float c = x < -104.0f ? -104.0f : x;  // exp underflows to 0 below (and -inf gives 0)
  c = c > 89.0f ? 89.0f : c;            // and overflows to inf above
  c = c == c ? c : 0.0f;                // NaN: a finite stand-in here, NaN returned below
  const float fn = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(c / ln 2)
  float r = c - fn * 0.693359375f;      // ln 2 in two parts: r = c - fn ln 2, exactly enough
  r = r - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t n = (int32_t)fn, n1 = n / 2, n2 = n - n1;  // 2^n as two normal factors: n in [-150, 129]
  const int32_t b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &b1, sizeof s1);
  std::memcpy(&s2, &b2, sizeof s2);
  const float y = p * s1 * s2;
  return x == x ? y : x;
}
static inline double exp(double x) { return std::exp(x); }

static inline float erf(float x) {
  const float z = std::fabs(x);
  const float t = 1.0f / (1.0f + 0.3275911f * z);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  return std::copysign(1.0f - p * t * exp(-z * z), x);
}
static inline double erf(double x) { return std::erf(x); }
}  // namespace gc_math

template <typename T> static inline T gc_relu(T x) { return x > T(0) ? x : T(0); }
template <typename T> static inline T gc_leaky_relu(T x, T s) { return x > T(0) ? x : s * x; }
template <typename T> static inline T gc_elu(T x, T a) { return x > T(0) ? x : a * (gc_math::exp(x) - T(1)); }
template <typename T> static inline T gc_gelu(T x) { return T(0.5) * x * (T(1) + gc_math::erf(x * T(0.70710678118654752))); }
template <typename T> static inline T gc_sigmoid(T x) { return T(1) / (T(1) + gc_math::exp(-x)); }
template <typename T> static inline T gc_d_relu(T x) { return x > T(0) ? T(1) : T(0); }
template <typename T> static inline T gc_d_leaky_relu(T x, T s) { return x > T(0) ? T(1) : s; }
template <typename T> static inline T gc_d_elu(T x, T a) { return x > T(0) ? T(1) : a * gc_math::exp(x); }
template <typename T> static inline T gc_d_gelu(T x) {
  return T(0.5) * (T(1) + gc_math::erf(x * T(0.70710678118654752))) + x * gc_math::exp(T(-0.5) * x * x) * T(0.39894228040143268);
}
template <typename T> static inline T gc_inf_to_zero(T x) { return std::isinf(x) ? T(0) : x; }

// The segment (type) of row r: the last t with ptr[t] <= r, by binary search over the pointer.
static inline int64_t gc_segment_of(const int64_t* ptr, int64_t num_segments, int64_t r) {
  return (int64_t)(std::upper_bound(ptr, ptr + num_segments + 1, r) - ptr) - 1;
}

#if defined(__AVX512F__)
// Masked 512-bit vectors for the last columns of a register tile (fewer than its 128 bytes):
// no read or write beyond a row, and each element summed in the plain loop's order. V is the
// number of vectors a row's tail needs (1 or 2); the second exists only when V == 2, so no
// address beyond a buffer is ever formed.
template <typename T> struct GcVec;
template <> struct GcVec<float> {
  using V = __m512;
  using M = __mmask16;
  static constexpr int lanes = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(M m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static void store(float* p, M m, V v) { _mm512_mask_storeu_ps(p, m, v); }
};
template <> struct GcVec<double> {
  using V = __m512d;
  using M = __mmask8;
  static constexpr int lanes = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(M m, const double* p) { return _mm512_maskz_loadu_pd(m, p); }
  static V set1(double x) { return _mm512_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static void store(double* p, M m, V v) { _mm512_mask_storeu_pd(p, m, v); }
};

template <typename T, int NV>
static inline void gc_gemm_tail_v(const T* const* a, const T* w, int64_t K, int64_t N, int64_t n0, T* c) {
  using X = GcVec<T>;
  constexpr int L = X::lanes;
  const int nr = (int)(N - n0);
  const typename X::M m0 = (typename X::M)(nr >= L ? ~0u : (1u << nr) - 1);
  const typename X::M m1 = (typename X::M)(nr > L ? (1u << (nr - L)) - 1 : 0u);
  typename X::V acc[6][NV];
  for (int q = 0; q < 6; ++q)
    for (int v = 0; v < NV; ++v) acc[q][v] = X::zero();
  for (int64_t k = 0; k < K; ++k) {
    typename X::V wv[NV];
    for (int v = 0; v < NV; ++v) wv[v] = X::load(v ? m1 : m0, w + k * N + n0 + v * L);
    for (int q = 0; q < 6; ++q) {
      const typename X::V av = X::set1(a[q][k]);
      for (int v = 0; v < NV; ++v) acc[q][v] = X::fma(av, wv[v], acc[q][v]);
    }
  }
  for (int q = 0; q < 6; ++q)
    for (int v = 0; v < NV; ++v) X::store(c + q * N + n0 + v * L, v ? m1 : m0, acc[q][v]);
}

// The last columns n0..N of c[q, :] = a[q] @ w for q < 6 in the 6-row tile's registers. A
// width such as ogbn-mag's 349 classes ran its last 29 columns in the plain loop: at K = 64 the
// GEMM went 65 -> 94 GFLOP/s, at K = N = 349 35 -> 91 (one thread).
template <typename T>
static inline void gc_gemm_tail(const T* const* a, const T* w, int64_t K, int64_t N, int64_t n0, T* c) {
  if (N - n0 > GcVec<T>::lanes)
    gc_gemm_tail_v<T, 2>(a, w, K, N, n0, c);
  else
    gc_gemm_tail_v<T, 1>(a, w, K, N, n0, c);
}
#endif

// c[q, 0:N] = a[q][0:K] @ w[0:K, 0:N] for q < mr (mr <= MR), w row-major with leading dimension N.
// Full MR x NR tiles keep their accumulators in vector registers; so do the last columns of a
// full MR-row block with AVX-512 (gc_gemm_tail); other edges take the plain loop.
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
#if defined(__AVX512F__)
    if (n0 < N) {
      gc_gemm_tail(a, w, K, N, n0, c);
      return;
    }
#endif
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

#if defined(__AVX512F__)
// The outer product's last columns j0..N (fewer than NR) for weight rows k0..k0+kr (kr <= 4) in
// masked vectors, over one pass of the chunk's rows (the plain edge loop passes over them once
// per weight row: 46 -> 64 GFLOP/s for a [8309, 64] x [8309, 349] weight gradient); each element
// is summed over the rows in order.
template <typename T, int NV>
static inline void gc_outer_tail_v(int64_t count, const T* const* a, const T* const* b, int64_t k0, int kr,
                                   int64_t j0, int nr, T* out, int64_t K, int64_t N, bool transposed, bool add) {
  using X = GcVec<T>;
  constexpr int L = X::lanes;
  const typename X::M m0 = (typename X::M)(nr >= L ? ~0u : (1u << nr) - 1);
  const typename X::M m1 = (typename X::M)(nr > L ? (1u << (nr - L)) - 1 : 0u);
  typename X::V acc[4][NV];
  for (int q = 0; q < 4; ++q)
    for (int v = 0; v < NV; ++v) acc[q][v] = X::zero();
  for (int64_t r = 0; r < count; ++r) {
    typename X::V bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = X::load(v ? m1 : m0, b[r] + j0 + v * L);
    for (int q = 0; q < kr; ++q) {
      const typename X::V av = X::set1(a[r][k0 + q]);
      for (int v = 0; v < NV; ++v) acc[q][v] = X::fma(av, bv[v], acc[q][v]);
    }
  }
  for (int q = 0; q < kr; ++q) {
    T row[NV * L];
    for (int v = 0; v < NV; ++v) X::store(row + v * L, (typename X::M)~0u, acc[q][v]);
    for (int j = 0; j < nr; ++j) {
      T& o = transposed ? out[(j0 + j) * K + k0 + q] : out[(k0 + q) * N + j0 + j];
      o = add ? o + row[j] : row[j];
    }
  }
}

template <typename T>
static inline void gc_outer_tail(int64_t count, const T* const* a, const T* const* b, int64_t k0, int kr,
                                 int64_t j0, int nr, T* out, int64_t K, int64_t N, bool transposed, bool add) {
  if (nr > GcVec<T>::lanes)
    gc_outer_tail_v<T, 2>(count, a, b, k0, kr, j0, nr, out, K, N, transposed, add);
  else
    gc_outer_tail_v<T, 1>(count, a, b, k0, kr, j0, nr, out, K, N, transposed, add);
}
#endif

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
  // columns outer: one column strip of the chunk's b rows (count x 128 bytes) stays in L1 while
  // every weight-row tile reads it (rows first re-read the whole chunk from L2 per tile)
  for (int64_t j0 = 0; j0 < N; j0 += NR) {
    const int nr = (int)std::min<int64_t>(NR, N - j0);
    for (int64_t kq = k0; kq < k1; kq += KR) {
      const int kr = (int)std::min<int64_t>(KR, k1 - kq);
      if (kr == KR && nr == NR)
        gc_outer_full<T, KR, NR>(count, a, b, kq, j0, out, K, N, transposed, add);
      else
#if defined(__AVX512F__)
        gc_outer_tail(count, a, b, kq, kr, j0, nr, out, K, N, transposed, add);
#else
        gc_outer_edge<T, NR>(count, a, b, kq, kr, j0, nr, out, K, N, transposed, add);
#endif
    }
  }
}

