// CUDA neighbour list: the cell grid of cell_grid.h built and searched on the device.
//
// Every size is fixed by N (and max_pairs), and the grid itself (cells per axis, image reach) is computed
// on the device from the box, so the fixed-capacity op makes no host synchronisation and can be captured
// in a CUDA graph and replayed with new positions and a new box. Steps:
//   1. one thread builds the CellGrid from the box (or the bounding box of the positions);
//   2. per atom: wrap, fractional coordinates, cell id, atomic histogram of the cells;
//   3. exclusive scan (at::cumsum) of the histogram; scatter atoms into their cells; each cell's atoms
//      are then sorted by index, so the layout, hence the output order, is deterministic;
//   4. count pass: one thread per atom (in cell order, for locality) counts its neighbours;
//   5. exclusive scan of the counts gives every atom's output offset;
//   6. fill pass: the same traversal writes pairs, vectors and shifts (up to the capacity).
// Both passes run the same code with IEEE-exact arithmetic (no FMA contraction), so they agree pair for
// pair, and pairs come out grouped by i in increasing order, in the same order as on the CPU.
// The dynamic op reads the total (one synchronisation) to size its outputs.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "cell_grid.h"
#include "neighbors.h"

namespace equiforce {
namespace {

using at::Tensor;

constexpr int kThreads = 128;

// Wrapped position in cell order, one 32-byte load (CUDA 13 deprecates double4).
struct alignas(32) Pos4 {
  double x, y, z, w;
};

inline int64_t blocks_for(int64_t n) { return (n + kThreads - 1) / kThreads; }

__device__ inline void load_grid(const CellGrid* src, CellGrid& dst) {
  // cooperative copy of the (small) grid description into shared memory
  const int words = sizeof(CellGrid) / sizeof(int32_t);
  const int32_t* s = reinterpret_cast<const int32_t*>(src);
  int32_t* d = reinterpret_cast<int32_t*>(&dst);
  for (int k = threadIdx.x; k < words; k += blockDim.x) d[k] = s[k];
  __syncthreads();
}

__global__ void grid_kernel(const double* box, const double* lohi, double cutoff, int sub, int64_t max_cells,
                            CellGrid* grid, int32_t* status) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  make_grid(*grid, box, lohi, lohi == nullptr ? nullptr : lohi + 3, cutoff, sub, max_cells);
  *status = grid->status;
}

__global__ void assign_kernel(const double* __restrict__ pos, int64_t n, const CellGrid* __restrict__ grid,
                              double* __restrict__ frac, double* __restrict__ wrapped, int32_t* __restrict__ wrap,
                              int32_t* __restrict__ cell, int32_t* __restrict__ cell_count, int32_t* status) {
  __shared__ CellGrid g;
  load_grid(grid, g);
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  double s[3], r[3];
  int64_t w[3], c;
  if (!assign_cell(g, pos + 3 * i, s, r, w, &c)) atomicOr(status, int32_t(kPositionsNotFinite));
  for (int k = 0; k < 3; ++k) {
    frac[3 * i + k] = s[k];
    wrapped[3 * i + k] = r[k];
    wrap[3 * i + k] = int32_t(w[k]);
  }
  cell[i] = int32_t(c);
  atomicAdd(cell_count + c, 1);
}

__global__ void scatter_kernel(int64_t n, const int32_t* __restrict__ cell, const int64_t* __restrict__ cell_start,
                               int32_t* __restrict__ cursor, int32_t* __restrict__ sorted_idx) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int32_t c = cell[i];
  sorted_idx[cell_start[c] + atomicAdd(cursor + c, 1)] = int32_t(i);
}

// Atomics scatter in arbitrary order: sort each cell's atoms by index (cells hold a few atoms).
__global__ void sort_cells_kernel(const CellGrid* __restrict__ grid, int64_t max_cells,
                                  const int64_t* __restrict__ cell_start, int32_t* __restrict__ sorted_idx) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= max_cells || c >= num_cells(*grid)) return;
  const int64_t begin = cell_start[c], end = cell_start[c + 1];
  for (int64_t k = begin + 1; k < end; ++k) {
    const int32_t v = sorted_idx[k];
    int64_t m = k - 1;
    while (m >= begin && sorted_idx[m] > v) {
      sorted_idx[m + 1] = sorted_idx[m];
      --m;
    }
    sorted_idx[m + 1] = v;
  }
}

__global__ void gather_kernel(int64_t n, const int32_t* __restrict__ sorted_idx, const double* __restrict__ wrapped,
                              Pos4* __restrict__ sorted_pos) {
  const int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n) return;
  const int32_t i = sorted_idx[k];
  sorted_pos[k] = Pos4{wrapped[3 * i], wrapped[3 * i + 1], wrapped[3 * i + 2], 0.0};
}

// Visits the neighbours of atom i in the canonical order: f(j, sa, sb, sc, d).
template <class F>
__device__ inline void visit_neighbours(const CellGrid& g, int64_t i, const double* __restrict__ frac,
                                        const double* __restrict__ wrapped, const int64_t* __restrict__ cell_start,
                                        const Pos4* __restrict__ sorted_pos, const int32_t* __restrict__ sorted_idx,
                                        F&& f) {
  const double r[3] = {wrapped[3 * i], wrapped[3 * i + 1], wrapped[3 * i + 2]};
  const double s[3] = {frac[3 * i], frac[3 * i + 1], frac[3 * i + 2]};
  const double rc2 = g.cutoff2;
  for_each_run(g, r, s, cell_start, [&](int64_t begin, int64_t end, int64_t sa, int64_t sb, int64_t sc) {
    double shift[3];
    image_shift(g, sa, sb, sc, shift);
    const double base[3] = {__dsub_rn(shift[0], r[0]), __dsub_rn(shift[1], r[1]), __dsub_rn(shift[2], r[2])};
    const bool home = (sa | sb | sc) == 0;
    for (int64_t k = begin; k < end; ++k) {
      const Pos4 q4 = sorted_pos[k];
      const double q[3] = {q4.x, q4.y, q4.z};
      double d[3];
      const double r2 = dist2(q, base, d);
      const int32_t j = sorted_idx[k];
      if (r2 < rc2 && !(home && j == i)) f(j, sa, sb, sc, d);
    }
  });
}

__global__ void count_kernel(int64_t n, const CellGrid* __restrict__ grid, const double* __restrict__ frac,
                             const double* __restrict__ wrapped, const int64_t* __restrict__ cell_start,
                             const Pos4* __restrict__ sorted_pos, const int32_t* __restrict__ sorted_idx,
                             int64_t* __restrict__ counts) {
  __shared__ CellGrid g;
  load_grid(grid, g);
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  const int64_t i = sorted_idx[t];  // consecutive threads handle nearby atoms
  if (g.status != kStatusOk) {
    counts[i] = 0;
    return;
  }
  int64_t c = 0;
  visit_neighbours(g, i, frac, wrapped, cell_start, sorted_pos, sorted_idx,
                   [&](int32_t, int64_t, int64_t, int64_t, const double*) { ++c; });
  counts[i] = c;
}

template <typename scalar_t>
__global__ void fill_kernel(int64_t n, const CellGrid* __restrict__ grid, const double* __restrict__ frac,
                            const double* __restrict__ wrapped, const int32_t* __restrict__ wrap,
                            const int64_t* __restrict__ cell_start, const Pos4* __restrict__ sorted_pos,
                            const int32_t* __restrict__ sorted_idx, const int64_t* __restrict__ offsets,
                            int64_t capacity, int64_t* __restrict__ pi, int64_t* __restrict__ pj,
                            scalar_t* __restrict__ vectors, scalar_t* __restrict__ shifts) {
  __shared__ CellGrid g;
  load_grid(grid, g);
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  const int64_t i = sorted_idx[t];
  if (g.status != kStatusOk) return;
  int64_t o = offsets[i];
  if (o >= capacity) return;
  const bool periodic = g.periodic != 0;
  visit_neighbours(g, i, frac, wrapped, cell_start, sorted_pos, sorted_idx,
                   [&](int32_t j, int64_t sa, int64_t sb, int64_t sc, const double* d) {
                     if (o < capacity) {
                       pi[o] = i;
                       pj[o] = j;
                       vectors[3 * o] = scalar_t(d[0]);
                       vectors[3 * o + 1] = scalar_t(d[1]);
                       vectors[3 * o + 2] = scalar_t(d[2]);
                       if (shifts != nullptr) {
                         if (periodic) {
                           shifts[3 * o] = scalar_t(sa - wrap[3 * j] + wrap[3 * i]);
                           shifts[3 * o + 1] = scalar_t(sb - wrap[3 * j + 1] + wrap[3 * i + 1]);
                           shifts[3 * o + 2] = scalar_t(sc - wrap[3 * j + 2] + wrap[3 * i + 2]);
                         } else {
                           shifts[3 * o] = shifts[3 * o + 1] = shifts[3 * o + 2] = scalar_t(0);
                         }
                       }
                     }
                     ++o;
                   });
}

// Steps 1-5. Everything stays on the device.
struct DeviceSearch {
  int64_t n = 0;
  Tensor grid, status, frac, wrapped, wrap, cell_start, sorted_pos, sorted_idx, counts, offsets, total;
};

DeviceSearch run_search(const Tensor& positions, double cutoff, const std::optional<Tensor>& box) {
  DeviceSearch S;
  S.n = positions.size(0);
  const int64_t n = S.n;
  const auto dev = positions.options();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const Tensor pos = positions.to(at::kDouble).contiguous();
  Tensor box_d, lohi;
  if (box.has_value()) {
    box_d = box->to(at::kDouble).contiguous();
  } else {
    auto mm = at::aminmax(pos, 0);
    lohi = at::cat({std::get<0>(mm), std::get<1>(mm)}).contiguous();
  }
  const int64_t max_cells = max_cells_for(n);
  S.grid = at::empty({int64_t((sizeof(CellGrid) + 7) / 8)}, dev.dtype(at::kLong));
  S.status = at::zeros({1}, dev.dtype(at::kInt));
  CellGrid* grid = reinterpret_cast<CellGrid*>(S.grid.data_ptr<int64_t>());
  int32_t* status = S.status.data_ptr<int32_t>();
  grid_kernel<<<1, 1, 0, stream>>>(box.has_value() ? box_d.data_ptr<double>() : nullptr,
                                   box.has_value() ? nullptr : lohi.data_ptr<double>(), cutoff, kCellsPerCutoff,
                                   max_cells, grid, status);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  S.frac = at::empty({n, 3}, dev.dtype(at::kDouble));
  S.wrapped = at::empty({n, 3}, dev.dtype(at::kDouble));
  S.wrap = at::empty({n, 3}, dev.dtype(at::kInt));
  Tensor cell = at::empty({n}, dev.dtype(at::kInt));
  Tensor cell_count = at::zeros({max_cells}, dev.dtype(at::kInt));
  assign_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
      pos.data_ptr<double>(), n, grid, S.frac.data_ptr<double>(), S.wrapped.data_ptr<double>(),
      S.wrap.data_ptr<int32_t>(), cell.data_ptr<int32_t>(), cell_count.data_ptr<int32_t>(), status);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  S.cell_start = at::zeros({max_cells + 1}, dev.dtype(at::kLong));
  S.cell_start.narrow(0, 1, max_cells).copy_(at::cumsum(cell_count, 0, at::kLong));
  Tensor cursor = at::zeros({max_cells}, dev.dtype(at::kInt));
  S.sorted_idx = at::empty({n}, dev.dtype(at::kInt));
  scatter_kernel<<<blocks_for(n), kThreads, 0, stream>>>(n, cell.data_ptr<int32_t>(), S.cell_start.data_ptr<int64_t>(),
                                                         cursor.data_ptr<int32_t>(), S.sorted_idx.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  sort_cells_kernel<<<blocks_for(max_cells), kThreads, 0, stream>>>(grid, max_cells, S.cell_start.data_ptr<int64_t>(),
                                                                    S.sorted_idx.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  S.sorted_pos = at::empty({n, 4}, dev.dtype(at::kDouble));
  gather_kernel<<<blocks_for(n), kThreads, 0, stream>>>(n, S.sorted_idx.data_ptr<int32_t>(),
                                                        S.wrapped.data_ptr<double>(),
                                                        reinterpret_cast<Pos4*>(S.sorted_pos.data_ptr<double>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  S.counts = at::empty({n}, dev.dtype(at::kLong));
  count_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
      n, grid, S.frac.data_ptr<double>(), S.wrapped.data_ptr<double>(), S.cell_start.data_ptr<int64_t>(),
      reinterpret_cast<const Pos4*>(S.sorted_pos.data_ptr<double>()), S.sorted_idx.data_ptr<int32_t>(),
      S.counts.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const Tensor inclusive = at::cumsum(S.counts, 0);
  S.offsets = inclusive - S.counts;
  S.total = inclusive.select(0, n - 1);  // 0-dim, on the device
  return S;
}

void fill(const DeviceSearch& S, const Tensor& positions, int64_t capacity, Tensor& pairs, Tensor& vectors,
          Tensor* shifts) {
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(positions.scalar_type(), "neighbor_list_cuda_fill", [&] {
    fill_kernel<scalar_t><<<blocks_for(S.n), kThreads, 0, stream>>>(
        S.n, reinterpret_cast<const CellGrid*>(S.grid.data_ptr<int64_t>()), S.frac.data_ptr<double>(),
        S.wrapped.data_ptr<double>(), S.wrap.data_ptr<int32_t>(), S.cell_start.data_ptr<int64_t>(),
        reinterpret_cast<const Pos4*>(S.sorted_pos.data_ptr<double>()), S.sorted_idx.data_ptr<int32_t>(),
        S.offsets.data_ptr<int64_t>(), capacity, pairs.data_ptr<int64_t>(), pairs.data_ptr<int64_t>() + capacity,
        vectors.data_ptr<scalar_t>(), shifts != nullptr ? shifts->data_ptr<scalar_t>() : nullptr);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<Tensor, Tensor, Tensor> neighbor_list_cuda(const Tensor& positions, double cutoff,
                                                      const std::optional<Tensor>& box, bool return_shifts) {
  check_inputs(positions, cutoff, box, "neighbor_list");
  const c10::cuda::CUDAGuard guard(positions.device());
  const auto opts = positions.options();
  const int64_t n = positions.size(0);
  if (n == 0) {
    return {at::empty({2, 0}, opts.dtype(at::kLong)), at::empty({0, 3}, opts), at::empty({0, 3}, opts)};
  }
  DeviceSearch S = run_search(positions, cutoff, box);
  // the single host synchronisation: total and status together
  const Tensor host = at::stack({S.total, S.status.select(0, 0).to(at::kLong)}).cpu();
  const int64_t total = host[0].item<int64_t>();
  const int32_t status = int32_t(host[1].item<int64_t>());
  if (status != kStatusOk) {
    double box_h[9];
    const double* box_ptr = nullptr;
    if (box.has_value()) {
      const Tensor b = box->to(at::kDouble).cpu().contiguous();
      for (int k = 0; k < 9; ++k) box_h[k] = b.data_ptr<double>()[k];
      box_ptr = box_h;
    }
    TORCH_CHECK(false, "neighbor_list: ", describe_status(status, box_ptr, cutoff));
  }
  Tensor pairs = at::empty({2, total}, opts.dtype(at::kLong));
  Tensor vectors = at::empty({total, 3}, opts);
  Tensor shifts = at::empty({return_shifts ? total : 0, 3}, opts);
  if (total > 0) fill(S, positions, total, pairs, vectors, return_shifts ? &shifts : nullptr);
  return {pairs, vectors, shifts};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> neighbor_list_fixed_cuda(const Tensor& positions, double cutoff,
                                                                            int64_t max_pairs,
                                                                            const std::optional<Tensor>& box,
                                                                            bool return_shifts) {
  check_inputs(positions, cutoff, box, "neighbor_list_fixed");
  check_max_pairs(max_pairs);
  const c10::cuda::CUDAGuard guard(positions.device());
  const auto opts = positions.options();
  const int64_t n = positions.size(0);
  Tensor pairs = at::full({2, max_pairs}, -1, opts.dtype(at::kLong));
  Tensor vectors = at::zeros({max_pairs, 3}, opts);
  Tensor shifts = at::zeros({return_shifts ? max_pairs : 0, 3}, opts);
  if (n == 0) {
    return {pairs, vectors, shifts, at::zeros({}, opts.dtype(at::kLong)), at::zeros({}, opts.dtype(at::kBool))};
  }
  DeviceSearch S = run_search(positions, cutoff, box);
  if (max_pairs > 0) fill(S, positions, max_pairs, pairs, vectors, return_shifts ? &shifts : nullptr);
  const Tensor invalid = S.status.select(0, 0).ne(0);
  const Tensor num_pairs = at::where(invalid, at::full({}, -1, opts.dtype(at::kLong)), S.total);
  const Tensor overflow = at::logical_or(S.total.gt(max_pairs), invalid);
  return {pairs, vectors, shifts, num_pairs, overflow};
}

}  // namespace
}  // namespace equiforce

TORCH_LIBRARY_IMPL(equiforce, CUDA, m) {
  m.impl("neighbor_list", &equiforce::neighbor_list_cuda);
  m.impl("neighbor_list_fixed", &equiforce::neighbor_list_fixed_cuda);
}
