// CPU neighbour list: O(N) cell list over fractional coordinates, multithreaded with at::parallel_for.
//
// 1. Wrap every atom into the primary cell and assign it a cell (parallel).
// 2. Counting sort of the atoms by cell into structure-of-arrays buffers (sequential, O(N), stable).
// 3. Search, atoms taken in cell order so that the candidates of consecutive atoms stay in cache. Blocks of
//    atoms are handed to threads dynamically; each thread appends the neighbours it finds, packed as
//    (cell-order index of j | image shift) in 8 bytes, to its own buffer. The distance test is branch-free
//    (distance_test.h: AVX2 with a compress-store when the CPU has it, portable code otherwise, same pairs).
// 4. Prefix sum over the per-atom counts in input order, then a parallel pass in input order (sequential
//    output streams) writes each atom's pairs, vectors and shifts at its final offset, recomputing each
//    vector with exactly the arithmetic of the test.
//
// Output order: pairs are grouped by i in increasing order; within one i they follow the cell grid's
// traversal order (cell_grid.h). It depends on neither the thread count nor the scheduling.
//
// Cost (benchmarks/neighbors.py, 24 000 atoms of water, cutoff 5 A, one thread): about 0.45 us per atom
// for the search and 0.35 us per atom for writing 54 pairs per atom; for large systems the kernel's zeroing
// of the fresh output pages is a large part of the rest.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif
#ifdef EQUIFORCE_PROFILE
#include <time.h>

#include <cstdio>
#endif

#include "cell_grid.h"
#include "distance_test.h"
#include "neighbors.h"

namespace equiforce {
namespace {

using at::Tensor;

constexpr int64_t kBlock = 64;  // atoms per scheduling block
// Below this many atoms per thread a parallel region costs more than it saves (waking a worker takes tens of
// microseconds, and on a busy machine it may wait for a core for milliseconds).
constexpr int64_t kMinAtomsPerThread = 4096;
using distance_test::kSlack;
using distance_test::test_run;

// Large outputs are fresh memory on every call (glibc maps allocations above 32 MiB anew each time), and
// first-touch page faults then cost as much as the search itself. Transparent huge pages, where the
// kernel offers them on request (mode "madvise"), cut the number of faults 512-fold.
void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  if (bytes < 2 * kHuge) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);  // a hint; errors ignored
#else
  (void)data;
  (void)bytes;
#endif
}

void advise_huge_pages(const Tensor& t) {
  if (t.numel() > 0) advise_huge_pages(t.data_ptr(), size_t(t.numel()) * t.element_size());
}

// Growable buffer of packed pairs without value-initialisation.
struct PairBuffer {
  std::unique_ptr<uint64_t[]> data;
  int64_t size = 0;
  int64_t capacity = 0;
  void reserve_more(int64_t extra) {
    if (size + extra <= capacity) return;
    const int64_t cap = std::max<int64_t>({capacity * 2, size + extra, 4096});
    std::unique_ptr<uint64_t[]> fresh(new uint64_t[cap]);
    advise_huge_pages(fresh.get(), size_t(cap) * sizeof(uint64_t));
    if (size > 0) std::memcpy(fresh.get(), data.get(), size * sizeof(uint64_t));
    data = std::move(fresh);
    capacity = cap;
  }
};

inline uint64_t pack_shift(int64_t sa, int64_t sb, int64_t sc) {
  return (uint64_t(sa + 128) << 32) | (uint64_t(sb + 128) << 40) | (uint64_t(sc + 128) << 48);
}

struct Search {
  CellGrid grid;
  int64_t n = 0;
  // cell order (index k): wrapped positions, fractional coordinates, wraps and atom index
  std::vector<double> sx, sy, sz;
  std::vector<double> sfrac;      // [N, 3]
  std::vector<int32_t> swrap;     // [N, 3], periodic only
  std::vector<int64_t> sidx;      // [N] atom index of cell-order entry k
  std::vector<int64_t> cell_start;  // [num_cells + 1]
  std::vector<int64_t> counts;      // [N] neighbours per atom, input order
  std::vector<PairBuffer> buffers;  // one per task
  std::vector<int32_t> block_task;    // [num_blocks] buffer holding the block (blocks of cell order)
  std::vector<int64_t> start;         // [N] offset of cell-order atom t's pairs in its block's buffer
  std::vector<int64_t> position;      // [N] cell-order position of atom i
};

int64_t num_tasks(int64_t n) {
  return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n / kMinAtomsPerThread));
}

// Runs fn(task, block) for every block, blocks handed out dynamically to `ntasks` threads (load balance
// between dense and sparse regions, and against a thread that the OS parks for a while).
template <class F>
void for_blocks(int64_t nblocks, int64_t ntasks, const F& fn) {
  std::atomic<int64_t> next{0};
  at::parallel_for(0, ntasks, 1, [&](int64_t t_begin, int64_t t_end) {
    for (int64_t t = t_begin; t < t_end; ++t) {
      for (int64_t b = next.fetch_add(1); b < nblocks; b = next.fetch_add(1)) fn(t, b);
    }
  });
}

void build_grid(Search& S, const double* pos, double cutoff, const double* box) {
  const int64_t n = S.n;
  double lo[3] = {0, 0, 0}, hi[3] = {0, 0, 0};
  if (box == nullptr && n > 0) {
    for (int k = 0; k < 3; ++k) lo[k] = hi[k] = pos[k];
    for (int64_t i = 0; i < n; ++i) {
      for (int k = 0; k < 3; ++k) {
        const double v = pos[3 * i + k];
        lo[k] = v < lo[k] ? v : lo[k];
        hi[k] = v > hi[k] ? v : hi[k];
      }
    }
  }
  make_grid(S.grid, box, lo, hi, cutoff, kCellsPerCutoff, max_cells_for(n));
  if (S.grid.status == kStatusOk) return;
  if (box != nullptr) TORCH_CHECK(false, "neighbor_list: ", describe_status(S.grid.status, box, cutoff));
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(all_finite(pos + 3 * i, 3), "neighbor_list: position of atom ", i, " is not finite: (", pos[3 * i],
                ", ", pos[3 * i + 1], ", ", pos[3 * i + 2], ")");
  }
  TORCH_CHECK(false, "neighbor_list: the positions span a range too large for double precision");
}

void assign_and_sort(Search& S, const double* pos) {
  const CellGrid& g = S.grid;
  const int64_t n = S.n;
  std::vector<double> frac(3 * n), wrapped(3 * n);
  std::vector<int32_t> wrap(g.periodic ? 3 * n : 0);
  std::vector<int64_t> cell(n);
  std::atomic<int64_t> first_bad{n};
  std::atomic<int64_t> first_far{n};
  at::parallel_for(0, n, 2 * kMinAtomsPerThread, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      int64_t w[3], c;
      if (!assign_cell(g, pos + 3 * i, &frac[3 * i], &wrapped[3 * i], w, &c)) {
        int64_t cur = first_bad.load();
        while (i < cur && !first_bad.compare_exchange_weak(cur, i)) {
        }
      }
      if (g.periodic) {
        for (int k = 0; k < 3; ++k) {
          if (w[k] <= -(int64_t(1) << 31) || w[k] >= (int64_t(1) << 31)) {
            int64_t cur = first_far.load();
            while (i < cur && !first_far.compare_exchange_weak(cur, i)) {
            }
          }
          wrap[3 * i + k] = int32_t(w[k]);
        }
      }
      cell[i] = c;
    }
  });
  const int64_t bad = first_bad.load();
  TORCH_CHECK(bad == n, "neighbor_list: position of atom ", bad, " is not finite: (", pos[3 * bad], ", ",
              pos[3 * bad + 1], ", ", pos[3 * bad + 2], ")");
  TORCH_CHECK(first_far.load() == n, "neighbor_list: atom ", first_far.load(),
              " lies more than 2^31 box lengths outside the box");
  const int64_t ncells = num_cells(g);
  S.cell_start.assign(ncells + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++S.cell_start[cell[i] + 1];
  for (int64_t c = 0; c < ncells; ++c) S.cell_start[c + 1] += S.cell_start[c];
  std::vector<int64_t> cursor(S.cell_start.begin(), S.cell_start.end() - 1);
  S.sx.resize(n);
  S.sy.resize(n);
  S.sz.resize(n);
  S.sfrac.resize(3 * n);
  S.swrap.resize(g.periodic ? 3 * n : 0);
  S.sidx.resize(n);
  S.position.resize(n);
  for (int64_t i = 0; i < n; ++i) {  // stable: atoms of one cell in increasing index
    const int64_t k = cursor[cell[i]]++;
    S.sx[k] = wrapped[3 * i];
    S.sy[k] = wrapped[3 * i + 1];
    S.sz[k] = wrapped[3 * i + 2];
    for (int d = 0; d < 3; ++d) S.sfrac[3 * k + d] = frac[3 * i + d];
    if (g.periodic) {
      for (int d = 0; d < 3; ++d) S.swrap[3 * k + d] = wrap[3 * i + d];
    }
    S.sidx[k] = i;
    S.position[i] = k;
  }
}

// ---------------------------------------------------------------------------------------------- search
// Neighbours of the atom at cell-order position t appended to `buf`.
inline int64_t search_atom(const Search& S, int64_t t, PairBuffer& buf) {
  const CellGrid& g = S.grid;
  const double r[3] = {S.sx[t], S.sy[t], S.sz[t]};
  const double* s = &S.sfrac[3 * t];
  const int64_t before = buf.size;
  const double rc2 = g.cutoff2;
  for_each_run(g, r, s, S.cell_start.data(), [&](int64_t begin, int64_t end, int64_t sa, int64_t sb, int64_t sc) {
    double shift[3];
    image_shift(g, sa, sb, sc, shift);
    const double base[3] = {shift[0] - r[0], shift[1] - r[1], shift[2] - r[2]};
    const bool home = (sa | sb | sc) == 0;
    buf.reserve_more(end - begin + kSlack);
    buf.size += test_run(S.sx.data(), S.sy.data(), S.sz.data(), begin, end, base, rc2, pack_shift(sa, sb, sc),
                         home ? t : -1, buf.data.get() + buf.size);
  });
  return buf.size - before;
}

void search_all(Search& S) {
  const int64_t n = S.n;
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
  S.counts.assign(n, 0);
  S.block_task.assign(nblocks, 0);
  S.start.assign(n, 0);
  const int64_t ntasks = num_tasks(n);
  S.buffers.clear();
  S.buffers.resize(ntasks);
  // Reserve for the expected number of pairs at uniform density plus 25 %, so that buffers rarely grow.
  const CellGrid& g = S.grid;
  const double* B = g.B;
  const double volume = std::fabs(B[0] * (B[4] * B[8] - B[5] * B[7]) - B[1] * (B[3] * B[8] - B[5] * B[6]) +
                                  B[2] * (B[3] * B[7] - B[4] * B[6]));
  const double expected = double(n) * double(n) / volume * 4.18879020478639 * g.cutoff2 * g.cutoff;
  const double per_task = std::min(1.25 * expected / double(ntasks) + 4096.0, double(int64_t(1) << 26));
  for (auto& buf : S.buffers) buf.reserve_more(int64_t(per_task));
  for_blocks(nblocks, ntasks, [&](int64_t task, int64_t b) {
    PairBuffer& buf = S.buffers[task];
    S.block_task[b] = int32_t(task);
    const int64_t t_end = std::min(n, (b + 1) * kBlock);
    for (int64_t t = b * kBlock; t < t_end; ++t) {
      S.start[t] = buf.size;
      S.counts[S.sidx[t]] = search_atom(S, t, buf);
    }
  });
}

template <typename scalar_t>
void write_pairs(const Search& S, const std::vector<int64_t>& offsets, int64_t capacity, int64_t* pi, int64_t* pj,
                 scalar_t* vec, scalar_t* shifts) {
  const CellGrid& g = S.grid;
  const int64_t n = S.n;
  const int64_t nblocks = (n + kBlock - 1) / kBlock;
  // In input order, so that the outputs are written as sequential streams.
  for_blocks(nblocks, num_tasks(n), [&](int64_t, int64_t b) {
    const int64_t i_end = std::min(n, (b + 1) * kBlock);
    for (int64_t i = b * kBlock; i < i_end; ++i) {
      const int64_t t = S.position[i];
      const uint64_t* src = S.buffers[S.block_task[t / kBlock]].data.get() + S.start[t];
      const double r[3] = {S.sx[t], S.sy[t], S.sz[t]};
      const int64_t o = offsets[i];
      const int64_t cnt = std::min(S.counts[i], std::max<int64_t>(0, capacity - o));
      uint64_t last_tag = ~uint64_t(0);
      int64_t sa = 0, sb = 0, sc = 0;
      double base[3] = {0, 0, 0};
      for (int64_t m = 0; m < cnt; ++m) {
        const uint64_t v = src[m];
        const int64_t k = int64_t(v & 0xffffffffu);
        if ((v >> 32) != last_tag) {  // consecutive pairs usually share the image shift (same run)
          last_tag = v >> 32;
          sa = int64_t((v >> 32) & 0xff) - 128;
          sb = int64_t((v >> 40) & 0xff) - 128;
          sc = int64_t((v >> 48) & 0xff) - 128;
          double shift[3];
          image_shift(g, sa, sb, sc, shift);
          base[0] = shift[0] - r[0];
          base[1] = shift[1] - r[1];
          base[2] = shift[2] - r[2];
        }
        const double q[3] = {S.sx[k], S.sy[k], S.sz[k]};
        double d[3];
        dist2(q, base, d);
        pi[o + m] = i;
        pj[o + m] = S.sidx[k];
        scalar_t* vv = vec + 3 * (o + m);
        vv[0] = scalar_t(d[0]);
        vv[1] = scalar_t(d[1]);
        vv[2] = scalar_t(d[2]);
        if (shifts != nullptr) {
          // lattice shift with respect to the positions as given: S - w_j + w_i
          scalar_t* ss = shifts + 3 * (o + m);
          if (g.periodic) {
            ss[0] = scalar_t(sa - S.swrap[3 * k] + S.swrap[3 * t]);
            ss[1] = scalar_t(sb - S.swrap[3 * k + 1] + S.swrap[3 * t + 1]);
            ss[2] = scalar_t(sc - S.swrap[3 * k + 2] + S.swrap[3 * t + 2]);
          } else {
            ss[0] = ss[1] = ss[2] = scalar_t(0);
          }
        }
      }
    }
  });
}

#ifdef EQUIFORCE_PROFILE
// Development aid: CPU time (all threads) of each phase, printed to stderr.
struct Clock {
  const char* what;
  double cpu0 = now(CLOCK_PROCESS_CPUTIME_ID), wall0 = now(CLOCK_MONOTONIC);
  static double now(clockid_t id) {
    timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
  }
  ~Clock() {
    std::fprintf(stderr, "equiforce neighbor_list %s %.3f ms wall %.3f\n", what, now(CLOCK_PROCESS_CPUTIME_ID) - cpu0,
                 now(CLOCK_MONOTONIC) - wall0);
  }
};
#define EQUIFORCE_PHASE(name) Clock clock_##name{#name}
#else
#define EQUIFORCE_PHASE(name)
#endif

// Steps 1-3; returns the prefix offsets in input order (size N + 1).
std::vector<int64_t> run_search(Search& S, const Tensor& positions, double cutoff, const std::optional<Tensor>& box) {
  S.n = positions.size(0);
  const Tensor pos = positions.to(at::kDouble).contiguous();
  double box_h[9];
  const double* box_ptr = nullptr;
  if (box.has_value()) {
    const Tensor b = box->to(at::kDouble).contiguous();
    std::memcpy(box_h, b.data_ptr<double>(), sizeof(box_h));
    box_ptr = box_h;
  }
  build_grid(S, pos.data_ptr<double>(), cutoff, box_ptr);
  std::vector<int64_t> offsets(S.n + 1, 0);
  if (S.n == 0) return offsets;
  {
    EQUIFORCE_PHASE(assign_sort);
    assign_and_sort(S, pos.data_ptr<double>());
  }
  {
    EQUIFORCE_PHASE(search);
    search_all(S);
  }
  for (int64_t i = 0; i < S.n; ++i) offsets[i + 1] = offsets[i] + S.counts[i];
  return offsets;
}

template <typename scalar_t>
void write_outputs(const Search& S, const std::vector<int64_t>& offsets, int64_t kept, int64_t stride, Tensor& pairs,
                   Tensor& vectors, Tensor& shifts, bool return_shifts) {
  EQUIFORCE_PHASE(write);
  write_pairs<scalar_t>(S, offsets, kept, pairs.data_ptr<int64_t>(), pairs.data_ptr<int64_t>() + stride,
                        vectors.data_ptr<scalar_t>(), return_shifts ? shifts.data_ptr<scalar_t>() : nullptr);
}

std::tuple<Tensor, Tensor, Tensor> neighbor_list_cpu(const Tensor& positions, double cutoff,
                                                     const std::optional<Tensor>& box, bool return_shifts) {
  check_inputs(positions, cutoff, box, "neighbor_list");
  Search S;
  const auto offsets = run_search(S, positions, cutoff, box);
  const int64_t total = offsets[S.n];
  const auto opts = positions.options();
  Tensor pairs = at::empty({2, total}, opts.dtype(at::kLong));
  Tensor vectors = at::empty({total, 3}, opts);
  Tensor shifts = at::empty({return_shifts ? total : 0, 3}, opts);
  for (const Tensor* t : {&pairs, &vectors, &shifts}) advise_huge_pages(*t);
  if (total > 0) {
    AT_DISPATCH_FLOATING_TYPES(positions.scalar_type(), "neighbor_list_cpu", [&] {
      write_outputs<scalar_t>(S, offsets, total, total, pairs, vectors, shifts, return_shifts);
    });
  }
  return {pairs, vectors, shifts};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> neighbor_list_fixed_cpu(const Tensor& positions, double cutoff,
                                                                           int64_t max_pairs,
                                                                           const std::optional<Tensor>& box,
                                                                           bool return_shifts) {
  check_inputs(positions, cutoff, box, "neighbor_list_fixed");
  check_max_pairs(max_pairs);
  Search S;
  const auto offsets = run_search(S, positions, cutoff, box);
  const int64_t total = offsets[S.n];
  const int64_t kept = std::min(total, max_pairs);
  const auto opts = positions.options();
  Tensor pairs = at::empty({2, max_pairs}, opts.dtype(at::kLong));
  Tensor vectors = at::empty({max_pairs, 3}, opts);
  Tensor shifts = at::empty({return_shifts ? max_pairs : 0, 3}, opts);
  for (const Tensor* t : {&pairs, &vectors, &shifts}) advise_huge_pages(*t);
  if (kept > 0) {
    AT_DISPATCH_FLOATING_TYPES(positions.scalar_type(), "neighbor_list_fixed_cpu", [&] {
      write_outputs<scalar_t>(S, offsets, kept, max_pairs, pairs, vectors, shifts, return_shifts);
    });
  }
  // padding: pairs -1, vectors and shifts 0
  pairs.narrow(1, kept, max_pairs - kept).fill_(-1);
  vectors.narrow(0, kept, max_pairs - kept).zero_();
  if (return_shifts) shifts.narrow(0, kept, max_pairs - kept).zero_();
  Tensor num_pairs = at::scalar_tensor(total, opts.dtype(at::kLong));
  Tensor overflow = at::scalar_tensor(total > max_pairs, opts.dtype(at::kBool));
  return {pairs, vectors, shifts, num_pairs, overflow};
}

}  // namespace
}  // namespace equiforce

TORCH_LIBRARY_IMPL(equiforce, CPU, m) {
  m.impl("neighbor_list", &equiforce::neighbor_list_cpu);
  m.impl("neighbor_list_fixed", &equiforce::neighbor_list_fixed_cpu);
}
