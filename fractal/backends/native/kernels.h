// A point's small product C (+)= A @ B for generated C++ (fractal's native backend): register
// blocked, MR rows by NR = 2 vectors of columns of C held in registers while k streams by, as
// GCC/Clang vector types, so each step is MR broadcasts and 2*MR fused multiply-adds.  MR and
// the vector width follow the instruction set the build targets (-march=native): 16 vector
// registers with AVX2 hold 6 x 2 accumulators, the two rows of B and a broadcast; AVX-512's 32
// hold 8 x 2 (with 4 x 32 scalar accumulators AVX2 spilled: 15 GFLOP/s a core on a 64^3
// product, 62 with these).  Operands are strided views: A(i, p) = A[i*ra + p*ca],
// B(p, j) = B[p*rb + j*cb], C(i, j) = C[i*rc + j*cc].  B's column block is read in place where
// its rows are contiguous and whole, else packed (zero-padded to NR) first.  Sums start at zero and C is added after, as a BLAS call with beta = 1 does.
#include <cstring>
#include <memory>
#include <type_traits>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define FT_VECTOR_BYTES 64
#define FT_GEMM_MR 8
#elif defined(__AVX__)
#define FT_VECTOR_BYTES 32
#define FT_GEMM_MR 6
#else
#define FT_VECTOR_BYTES 16
#define FT_GEMM_MR 4
#endif

template <typename T> struct ft_gemm_block {
  typedef T vec __attribute__((vector_size(FT_VECTOR_BYTES)));
  static constexpr int W = FT_VECTOR_BYTES / sizeof(T);   // lanes of a vector
  static constexpr int NR = 2 * W;
  static constexpr int MR = FT_GEMM_MR;
};

#if defined(__AVX__)
// dst[i*ds + j] = src[j*ss + i] for an 8 x 8 block of floats, transposed in registers: packing
// B^T (attention's Q K^T) one element at a time cost a quarter of the product's time
static inline void ft_transpose8x8(const float* src, long long ss, float* dst, long long ds) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ss);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}
#endif

// B^T's column block (nb columns, each contiguous along k) packed as rows of NR: P[p*NR + j] = Bp[p + j*cb]
template <typename T, int NR>
static inline void ft_pack_transposed(long long k, long long nb, const T* Bp, long long cb, T* P) {
  long long j0 = 0;
#if defined(__AVX__)
  if constexpr (std::is_same<T, float>::value)
    for (; j0 + 8 <= nb; j0 += 8) {
      long long p = 0;
      for (; p + 8 <= k; p += 8) ft_transpose8x8(Bp + p + j0 * cb, cb, P + p * NR + j0, NR);
      for (; p < k; ++p)
        for (long long jj = j0; jj < j0 + 8; ++jj) P[p * NR + jj] = Bp[p + jj * cb];
    }
#endif
  for (long long jj = j0; jj < nb; ++jj)
    for (long long p = 0; p < k; ++p) P[p * NR + jj] = Bp[p + jj * cb];
}

template <typename T, int MB>
static inline void ft_gemm_rows(long long k, const T* A, long long ra, long long ca, const T* Bp, long long bstride,
                                T* C, long long rc, long long cc, long long nb, bool accumulate) {
  using V = typename ft_gemm_block<T>::vec;
  constexpr int W = ft_gemm_block<T>::W, NR = ft_gemm_block<T>::NR;
  V acc0[MB], acc1[MB];
  for (int ii = 0; ii < MB; ++ii) { acc0[ii] = V{}; acc1[ii] = V{}; }
  for (long long p = 0; p < k; ++p) {
    V b0, b1;   // (memcpy: B's rows need not be aligned)
    std::memcpy(&b0, Bp + p * bstride, sizeof(V));
    std::memcpy(&b1, Bp + p * bstride + W, sizeof(V));
    for (int ii = 0; ii < MB; ++ii) {
      const T a = A[ii * ra + p * ca];
      acc0[ii] += a * b0;
      acc1[ii] += a * b1;
    }
  }
  if (cc == 1 && nb == NR) {   // (a whole row block of C: stored as vectors)
    for (int ii = 0; ii < MB; ++ii) {
      T* c = C + ii * rc;
      if (accumulate) {
        V c0, c1;
        std::memcpy(&c0, c, sizeof(V));
        std::memcpy(&c1, c + W, sizeof(V));
        acc0[ii] += c0;
        acc1[ii] += c1;
      }
      std::memcpy(c, &acc0[ii], sizeof(V));
      std::memcpy(c + W, &acc1[ii], sizeof(V));
    }
    return;
  }
  for (int ii = 0; ii < MB; ++ii) {
    T row[NR];
    std::memcpy(row, &acc0[ii], sizeof(V));
    std::memcpy(row + W, &acc1[ii], sizeof(V));
    for (long long jj = 0; jj < nb; ++jj) {
      T& c = C[ii * rc + jj * cc];
      c = accumulate ? c + row[jj] : row[jj];
    }
  }
}

// the last rows - fewer than MR - with as many accumulators as rows
template <typename T, int MB>
static inline void ft_gemm_tail(long long rows, long long k, const T* A, long long ra, long long ca, const T* Bp,
                                long long bstride, T* C, long long rc, long long cc, long long nb, bool accumulate) {
  if constexpr (MB > 0) {
    if (rows == MB) ft_gemm_rows<T, MB>(k, A, ra, ca, Bp, bstride, C, rc, cc, nb, accumulate);
    else ft_gemm_tail<T, MB - 1>(rows, k, A, ra, ca, Bp, bstride, C, rc, cc, nb, accumulate);
  }
}

template <typename T>
static void ft_small_gemm(long long m, long long n, long long k, const T* A, long long ra, long long ca,
                          const T* B, long long rb, long long cb, T* C, long long rc, long long cc, bool accumulate) {
  constexpr int NR = ft_gemm_block<T>::NR, MR = ft_gemm_block<T>::MR;
  if (k == 1) {   // (an outer product: a row of C per element of A, no packing; retention's k^T v)
    for (long long i = 0; i < m; ++i) {
      const T a = A[i * ra];
      T* c = C + i * rc;
      if (accumulate)
        for (long long j = 0; j < n; ++j) c[j * cc] += a * B[j * cb];
      else
        for (long long j = 0; j < n; ++j) c[j * cc] = a * B[j * cb];
    }
    return;
  }
  if (n < 8) {   // (narrow: dot products along k in 8 lanes, no packing)
    for (long long i = 0; i < m; ++i)
      for (long long j = 0; j < n; ++j) {
        const T* a = A + i * ra;
        const T* b = B + j * cb;
        T lane[8] = {T(0), T(0), T(0), T(0), T(0), T(0), T(0), T(0)};
        long long p = 0;
        for (; p + 8 <= k; p += 8)
          for (int q = 0; q < 8; ++q) lane[q] += a[(p + q) * ca] * b[(p + q) * rb];
        for (; p < k; ++p) lane[0] += a[p * ca] * b[p * rb];
        const T s = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
        T& c = C[i * rc + j * cc];
        c = accumulate ? c + s : s;
      }
    return;
  }
  std::unique_ptr<T[]> pack;
  for (long long j0 = 0; j0 < n; j0 += NR) {
    const long long nb = n - j0 < NR ? n - j0 : NR;
    const T* Bp = B + j0 * cb;
    long long bstride = rb;
    // packed (zero-padded to NR) when strided or narrower than NR, or when several row blocks
    // read it and its rows lie a multiple of 2 KiB apart (they would share few L1 sets)
    if (cb != 1 || nb < NR || (m > MR && (rb * (long long)sizeof(T)) % 2048 == 0)) {
      if (!pack) pack.reset(new T[(k > 0 ? k : 1) * NR]);
      T* P = pack.get();
      if (nb < NR)
        for (long long p = 0; p < k; ++p)
          for (int jj = (int)nb; jj < NR; ++jj) P[p * NR + jj] = T(0);
      if (rb == 1)   // (B^T: its columns are contiguous, read along them)
        ft_pack_transposed<T, NR>(k, nb, Bp, cb, P);
      else if (cb == 1 && nb == NR)
        for (long long p = 0; p < k; ++p) std::memcpy(P + p * NR, Bp + p * rb, NR * sizeof(T));
      else
        for (long long p = 0; p < k; ++p)
          for (long long jj = 0; jj < nb; ++jj) P[p * NR + jj] = Bp[p * rb + jj * cb];
      Bp = pack.get();
      bstride = NR;
    }
    long long i0 = 0;
    for (; i0 + MR <= m; i0 += MR)
      ft_gemm_rows<T, MR>(k, A + i0 * ra, ra, ca, Bp, bstride, C + i0 * rc + j0 * cc, rc, cc, nb, accumulate);
    ft_gemm_tail<T, MR - 1>(m - i0, k, A + i0 * ra, ra, ca, Bp, bstride, C + i0 * rc + j0 * cc, rc, cc, nb, accumulate);
  }
}
