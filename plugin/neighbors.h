// Declarations shared by the neighbour-list op sources (schema in ops.cpp, kernels in neighbors_cpu.cpp
// and neighbors_cuda.cu).
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <tuple>

namespace equiforce {

// Cells per cutoff length. With cells about one cutoff wide a search visits ~5 candidates per neighbour in
// ~9 contiguous runs per atom; half-cutoff cells halve the candidates but triple the runs, which costs more
// (measured with benchmarks/neighbors.py). Overridable at build time for experiments.
#ifndef EQUIFORCE_CELLS_PER_CUTOFF
#define EQUIFORCE_CELLS_PER_CUTOFF 1
#endif
constexpr int kCellsPerCutoff = EQUIFORCE_CELLS_PER_CUTOFF;

// Upper bound on the number of cells for n atoms: the table never outgrows the system (a sparse gas
// in a large box gets cells larger than the cutoff instead).
inline int64_t max_cells_for(int64_t n_atoms) { return 2 * n_atoms + 64; }

// Shape, dtype and device checks shared by every backend. Value checks (finite, non-degenerate box)
// happen in the backends: on the CPU before the search, on CUDA on the device.
void check_inputs(const at::Tensor& positions, double cutoff, const std::optional<at::Tensor>& box,
                  const char* op_name);
void check_max_pairs(int64_t max_pairs);

// Human-readable diagnosis of a box (9 doubles, rows a, b, c) for error messages: names the offending
// vector. Empty string when the box is usable.
std::string describe_box_problem(const double* box, double cutoff);

// Error message for a set of StatusBits (cell_grid.h); `box` may be null.
std::string describe_status(int32_t status, const double* box, double cutoff);

}  // namespace equiforce
