// Branch-free distance test of the CPU neighbour list (neighbors_cpu.cpp): one run of candidates against one atom.
//
// Candidates are given as structure-of-arrays coordinates xs, ys, zs (the cell-order copy of the positions).
// AVX2 with a compress-store when the CPU has it (checked once, at load time), portable code otherwise; both
// compute the same IEEE operations in the same order, so they find the same pairs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define EQUIFORCE_X86_DISPATCH 1
#include <immintrin.h>
#endif

namespace equiforce {
namespace distance_test {

constexpr int64_t kSlack = 4;  // the vector compress-store writes up to 4 entries past the last hit

// Candidates [begin, end) in cell order seen through `base` = S B - r_i. Writes tag | k for every candidate
// k with r2 < rc2 and k != self to `out` (which has room for end - begin + kSlack entries) and returns the
// number written. Both versions compute r2 = (dx dx + dy dy) + dz dz with the same IEEE operations as
// dist2() in cell_grid.h, hence the same pairs.
using TestRunFn = int64_t (*)(const double*, const double*, const double*, int64_t, int64_t, const double*, double,
                              uint64_t, int64_t, uint64_t*);

inline int64_t test_run_portable(const double* __restrict xs, const double* __restrict ys, const double* __restrict zs,
                                 int64_t begin, int64_t end, const double* base, double rc2, uint64_t tag, int64_t self,
                                 uint64_t* out) {
  constexpr int64_t kChunk = 64;
  const double bx = base[0], by = base[1], bz = base[2];
  int64_t c = 0;
  double r2[kChunk];
  for (int64_t k0 = begin; k0 < end; k0 += kChunk) {
    const int64_t m = std::min(kChunk, end - k0);
    for (int64_t t = 0; t < m; ++t) {  // vectorised by the compiler
      const double dx = xs[k0 + t] + bx, dy = ys[k0 + t] + by, dz = zs[k0 + t] + bz;
      r2[t] = (dx * dx + dy * dy) + dz * dz;
    }
    for (int64_t t = 0; t < m; ++t) {  // branch-free compaction
      const int64_t k = k0 + t;
      out[c] = tag | uint64_t(k);
      c += (r2[t] < rc2) & (k != self);
    }
  }
  return c;
}

#ifdef EQUIFORCE_X86_DISPATCH
// Permutations of 32-bit lanes that move the selected 64-bit lanes of a 4-lane mask to the front.
struct CompressTable {
  alignas(32) int32_t lanes[16][8];
  CompressTable() {
    for (int mask = 0; mask < 16; ++mask) {
      int out = 0;
      for (int l = 0; l < 4; ++l) {
        if (mask & (1 << l)) {
          lanes[mask][2 * out] = 2 * l;
          lanes[mask][2 * out + 1] = 2 * l + 1;
          ++out;
        }
      }
      for (; out < 4; ++out) lanes[mask][2 * out] = lanes[mask][2 * out + 1] = 0;
    }
  }
};
inline const CompressTable kCompress;

__attribute__((target("avx2"))) inline int64_t test_run_avx2(const double* xs, const double* ys, const double* zs,
                                                             int64_t begin, int64_t end, const double* base, double rc2,
                                                             uint64_t tag, int64_t self, uint64_t* out) {
  const __m256d bx = _mm256_set1_pd(base[0]), by = _mm256_set1_pd(base[1]), bz = _mm256_set1_pd(base[2]);
  const __m256d cut2 = _mm256_set1_pd(rc2);
  const __m256i tags = _mm256_set1_epi64x(static_cast<long long>(tag));
  const __m256i selfv = _mm256_set1_epi64x(self);
  const __m256i step = _mm256_set1_epi64x(4);
  __m256i kv = _mm256_add_epi64(_mm256_set1_epi64x(begin), _mm256_setr_epi64x(0, 1, 2, 3));
  const __m256i endv = _mm256_set1_epi64x(end);
  int64_t c = 0;
  for (int64_t k = begin; k < end; k += 4) {
    // lanes past `end` are neither loaded (masked loads do not fault) nor counted
    const __m256i valid = _mm256_cmpgt_epi64(endv, kv);
    const __m256d dx = _mm256_add_pd(_mm256_maskload_pd(xs + k, valid), bx);
    const __m256d dy = _mm256_add_pd(_mm256_maskload_pd(ys + k, valid), by);
    const __m256d dz = _mm256_add_pd(_mm256_maskload_pd(zs + k, valid), bz);
    const __m256d r2 =
        _mm256_add_pd(_mm256_add_pd(_mm256_mul_pd(dx, dx), _mm256_mul_pd(dy, dy)), _mm256_mul_pd(dz, dz));
    const __m256i inside = _mm256_and_si256(_mm256_castpd_si256(_mm256_cmp_pd(r2, cut2, _CMP_LT_OQ)), valid);
    const __m256i hit = _mm256_andnot_si256(_mm256_cmpeq_epi64(kv, selfv), inside);
    const int mask = _mm256_movemask_pd(_mm256_castsi256_pd(hit));
    const __m256i perm = _mm256_load_si256(reinterpret_cast<const __m256i*>(kCompress.lanes[mask]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + c),
                        _mm256_permutevar8x32_epi32(_mm256_or_si256(kv, tags), perm));
    c += __builtin_popcount(static_cast<unsigned>(mask));
    kv = _mm256_add_epi64(kv, step);
  }
  return c;
}
#endif

inline TestRunFn select_test_run() {
#ifdef EQUIFORCE_X86_DISPATCH
  // EQUIFORCE_NO_AVX2=1 forces the portable path (tests compare the two).
  const char* off = std::getenv("EQUIFORCE_NO_AVX2");
  __builtin_cpu_init();  // this runs while the library loads, possibly before libgcc's own initialiser
  if (__builtin_cpu_supports("avx2") && !(off != nullptr && off[0] != '\0' && off[0] != '0')) return test_run_avx2;
#endif
  return test_run_portable;
}

inline const TestRunFn test_run = select_test_run();

}  // namespace distance_test
}  // namespace equiforce
