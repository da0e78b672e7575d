// A point's small product C (+)= A @ B for generated C++ (fractal's native backend): register
// blocked, MR rows by NR columns of C held in registers while k streams by, so the compiler
// turns the NR-wide inner loops into SIMD fused multiply-adds.  Operands are strided views:
// A(i, p) = A[i*ra + p*ca], B(p, j) = B[p*rb + j*cb], C(i, j) = C[i*rc + j*cc].  B's column
// block is read in place where its rows are contiguous and whole, else packed (zero-padded to
// NR) first, where several row blocks read it.  Sums start at zero and C is added after, as a BLAS call with beta = 1 does.
#include <cstring>
#include <memory>

template <typename T> struct ft_gemm_block { static constexpr int NR = 64 / sizeof(T) * 2; static constexpr int MR = 4; };

template <typename T, int MB>
static inline void ft_gemm_rows(long long k, const T* A, long long ra, long long ca, const T* Bp, long long bstride,
                                T* C, long long rc, long long cc, long long nb, bool accumulate) {
  constexpr int NR = ft_gemm_block<T>::NR;
  T acc[MB][NR];
  for (int ii = 0; ii < MB; ++ii)
    for (int jj = 0; jj < NR; ++jj) acc[ii][jj] = T(0);
  for (long long p = 0; p < k; ++p) {
    const T* b = Bp + p * bstride;
    for (int ii = 0; ii < MB; ++ii) {
      const T a = A[ii * ra + p * ca];
      for (int jj = 0; jj < NR; ++jj) acc[ii][jj] += a * b[jj];
    }
  }
  for (int ii = 0; ii < MB; ++ii)
    for (long long jj = 0; jj < nb; ++jj) {
      T& c = C[ii * rc + jj * cc];
      c = accumulate ? c + acc[ii][jj] : acc[ii][jj];
    }
}

template <typename T>
static void ft_small_gemm(long long m, long long n, long long k, const T* A, long long ra, long long ca,
                          const T* B, long long rb, long long cb, T* C, long long rc, long long cc, bool accumulate) {
  constexpr int NR = ft_gemm_block<T>::NR, MR = ft_gemm_block<T>::MR;
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
    // packed (zero-padded to NR) when strided, narrower than NR, or read by several row blocks:
    // B's rows a long stride apart would map to few cache sets
    if (cb != 1 || nb < NR || m > MR) {
      if (!pack) pack.reset(new T[(k > 0 ? k : 1) * NR]);
      for (long long p = 0; p < k; ++p)
        for (int jj = 0; jj < NR; ++jj) pack[p * NR + jj] = jj < nb ? B[p * rb + (j0 + jj) * cb] : T(0);
      Bp = pack.get();
      bstride = NR;
    }
    long long i0 = 0;
    for (; i0 + MR <= m; i0 += MR)
      ft_gemm_rows<T, MR>(k, A + i0 * ra, ra, ca, Bp, bstride, C + i0 * rc + j0 * cc, rc, cc, nb, accumulate);
    switch (m - i0) {
      case 3: ft_gemm_rows<T, 3>(k, A + i0 * ra, ra, ca, Bp, bstride, C + i0 * rc + j0 * cc, rc, cc, nb, accumulate); break;
      case 2: ft_gemm_rows<T, 2>(k, A + i0 * ra, ra, ca, Bp, bstride, C + i0 * rc + j0 * cc, rc, cc, nb, accumulate); break;
      case 1: ft_gemm_rows<T, 1>(k, A + i0 * ra, ra, ca, Bp, bstride, C + i0 * rc + j0 * cc, rc, cc, nb, accumulate); break;
      default: break;
    }
  }
}
