// Fused tensor-product convolution: gather, 'uvu' tensor product and scatter in one pass over the edges.
//
//   torch.ops.equiforce.tp_convolution(features [N, D1], edge_sh [E, D2], edge_weights [E, W],
//                                      centre [E] int64, neighbour [E] int64,
//                                      paths: int[9 P], couplings: int[3 K], coefficients: float[K],
//                                      num_nodes) -> [num_nodes, D3]
//
//   out[centre[e], o3 + u d3 + m3] += c_k * w[e, w0 + u] * x[neighbour[e], o1 + u d1 + m1] * y[e, o2 + m2]
//
// for every path p, every coupling k of that path ((m1, m2, m3) with coefficient c_k) and every channel u < mul.
// A path row is (o1, d1, o2, o3, d3, w0, mul, k_begin, k_end): the offsets of its input-1 block, input-2 block
// and output block, the irrep dimensions d1 = 2 l1 + 1 and d3 = 2 l3 + 1, the offset of its per-edge weights,
// its multiplicity and its range of couplings. The tables are read off an e3nn TensorProduct in Python
// (equiforce/nn/_fused_convolution.py), so the coefficients (Wigner 3j symbols and e3nn's normalisations) are
// e3nn's own. Unlike gather -> e3nn TensorProduct -> index_add, no [E, D1] or [E, D3] tensor is made, forward
// or backward.
//
// Autograd: first derivatives with respect to features, edge_sh and edge_weights (forces, by one backward
// pass). The backward is not itself differentiable: a double backward (training on forces) raises, and the
// models use e3nn's tensor product there. CPU only; CUDA inputs raise (the models keep e3nn's code on a GPU).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <vector>

namespace equiforce {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int kPathColumns = 9;
constexpr int64_t kEdgesPerChunk = 2048;  // below this a thread's share is not worth a private buffer

struct Path {
  int64_t o1, d1, o2, o3, d3, w0, mul, k_begin, k_end;
};

struct Coupling {
  int64_t m1, m2, m3;
  double c;
};

struct Tables {
  std::vector<Path> paths;
  std::vector<Coupling> couplings;
};

// Reads and checks the path and coupling tables against the widths of the inputs and of the output.
Tables read_tables(c10::IntArrayRef paths, c10::IntArrayRef couplings, c10::ArrayRef<double> coefficients,
                   int64_t d1_total, int64_t d2_total, int64_t w_total, int64_t d3_total) {
  TORCH_CHECK(paths.size() % kPathColumns == 0, "tp_convolution: paths must hold 9 numbers a path, got ",
              paths.size());
  TORCH_CHECK(couplings.size() == 3 * coefficients.size(), "tp_convolution: couplings must hold 3 numbers (m1, m2, ",
              "m3) for each of the ", coefficients.size(), " coefficients, got ", couplings.size());
  const int64_t n_couplings = int64_t(coefficients.size());
  Tables t;
  for (size_t r = 0; r < paths.size() / kPathColumns; ++r) {
    const int64_t* row = paths.data() + kPathColumns * r;
    Path path{row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8]};
    TORCH_CHECK(path.d1 > 0 && path.d3 > 0 && path.mul > 0 && path.o1 >= 0 && path.o2 >= 0 && path.o3 >= 0 &&
                    path.w0 >= 0 && path.o1 + path.mul * path.d1 <= d1_total &&
                    path.o3 + path.mul * path.d3 <= d3_total && path.w0 + path.mul <= w_total &&
                    0 <= path.k_begin && path.k_begin <= path.k_end && path.k_end <= n_couplings,
                "tp_convolution: path ", r, " (", row[0], ", ", row[1], ", ", row[2], ", ", row[3], ", ", row[4], ", ",
                row[5], ", ", row[6], ", ", row[7], ", ", row[8], ") does not fit features of width ", d1_total,
                ", weights of width ", w_total, " and an output of width ", d3_total);
    for (int64_t q = path.k_begin; q < path.k_end; ++q) {
      const int64_t m1 = couplings[3 * q], m2 = couplings[3 * q + 1], m3 = couplings[3 * q + 2];
      TORCH_CHECK(0 <= m1 && m1 < path.d1 && 0 <= m3 && m3 < path.d3 && 0 <= m2 && path.o2 + m2 < d2_total,
                  "tp_convolution: coupling ", q, " (", m1, ", ", m2, ", ", m3, ") is outside path ", r);
    }
    t.paths.push_back(path);
  }
  for (int64_t q = 0; q < n_couplings; ++q) {
    t.couplings.push_back({couplings[3 * q], couplings[3 * q + 1], couplings[3 * q + 2], coefficients[q]});
  }
  return t;
}

// Width of the output: as far as the furthest path reaches.
int64_t output_width(c10::IntArrayRef paths) {
  int64_t width = 0;
  for (size_t r = 0; r + kPathColumns <= paths.size(); r += kPathColumns) {
    width = std::max(width, paths[r + 3] + paths[r + 6] * paths[r + 4]);
  }
  return width;
}

void check_inputs(const Tensor& features, const Tensor& edge_sh, const Tensor& edge_weights, const Tensor& centre,
                  const Tensor& neighbour, int64_t num_nodes) {
  TORCH_CHECK(features.dim() == 2 && edge_sh.dim() == 2 && edge_weights.dim() == 2,
              "tp_convolution: features [N, D1], edge_sh [E, D2] and edge_weights [E, W] must be 2-D, got ",
              features.sizes(), ", ", edge_sh.sizes(), ", ", edge_weights.sizes());
  const int64_t e = edge_sh.size(0);
  TORCH_CHECK(edge_weights.size(0) == e && centre.dim() == 1 && centre.size(0) == e && neighbour.dim() == 1 &&
                  neighbour.size(0) == e,
              "tp_convolution: edge_sh ", edge_sh.sizes(), ", edge_weights ", edge_weights.sizes(), ", centre ",
              centre.sizes(), " and neighbour ", neighbour.sizes(), " must have the same number of edges");
  TORCH_CHECK(centre.scalar_type() == at::kLong && neighbour.scalar_type() == at::kLong,
              "tp_convolution: centre and neighbour must be int64, got ", centre.scalar_type(), " and ",
              neighbour.scalar_type());
  TORCH_CHECK(features.scalar_type() == edge_sh.scalar_type() && features.scalar_type() == edge_weights.scalar_type(),
              "tp_convolution: features (", features.scalar_type(), "), edge_sh (", edge_sh.scalar_type(),
              ") and edge_weights (", edge_weights.scalar_type(), ") must have one dtype");
  TORCH_CHECK(features.scalar_type() == at::kFloat || features.scalar_type() == at::kDouble,
              "tp_convolution: float32 or float64 inputs, got ", features.scalar_type());
  TORCH_CHECK(features.device().is_cpu() && edge_sh.device().is_cpu() && edge_weights.device().is_cpu(),
              "tp_convolution runs on the CPU only (got features on ", features.device(),
              "); equiforce models keep e3nn's tensor product on other devices");
  TORCH_CHECK(num_nodes == features.size(0), "tp_convolution: num_nodes (", num_nodes,
              ") must equal the number of feature rows (", features.size(0), ")");
}

// Edge indices must name nodes; one pass, before any output is written.
void check_indices(const int64_t* centre, const int64_t* neighbour, int64_t e, int64_t n) {
  for (int64_t k = 0; k < e; ++k) {
    TORCH_CHECK(0 <= centre[k] && centre[k] < n && 0 <= neighbour[k] && neighbour[k] < n, "tp_convolution: edge ", k,
                " joins nodes (", centre[k], ", ", neighbour[k], ") but there are ", n, " nodes");
  }
}

// Runs body(begin, end, target) over the edges, in chunks of at least kEdgesPerChunk, one chunk a thread.
// target is `out` for the first chunk and a private zeroed buffer of out's shape for the others; the buffers
// are added into `out` at the end, in chunk order, so the result does not depend on the scheduling.
template <typename scalar_t, typename Body>
void scatter_over_edges(int64_t e, Tensor& out, const Body& body) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), e / kEdgesPerChunk));
  if (chunks == 1) {
    body(0, e, out.data_ptr<scalar_t>());
    return;
  }
  std::vector<Tensor> buffers(chunks - 1);
  for (auto& b : buffers) b = at::zeros_like(out);
  const int64_t per_chunk = (e + chunks - 1) / chunks;
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      scalar_t* target = c == 0 ? out.data_ptr<scalar_t>() : buffers[c - 1].data_ptr<scalar_t>();
      body(c * per_chunk, std::min(e, (c + 1) * per_chunk), target);
    }
  });
  for (auto& b : buffers) out.add_(b);
}

// Node tensors are [N, width] with irrep blocks stored channel-major, [mul, d] (e3nn's layout). The kernels
// work on a channel-last copy, [d, mul] within each block a path reads or writes, so that every inner loop
// runs over the channels u with unit stride and vectorises. The copies are per node (N x width), cheap
// next to the per-edge work.
struct Block {
  int64_t offset, mul, d;
};

std::vector<Block> blocks_of(const std::vector<Path>& paths, bool input) {
  std::vector<Block> blocks;
  for (const Path& p : paths) {
    const Block b = input ? Block{p.o1, p.mul, p.d1} : Block{p.o3, p.mul, p.d3};
    if (b.d == 1) continue;  // [mul, 1] and [1, mul] are the same
    bool seen = false;
    for (const Block& other : blocks) seen = seen || (other.offset == b.offset);
    if (!seen) blocks.push_back(b);
  }
  return blocks;
}

// [N, width] with the listed blocks transposed from [mul, d] to [d, mul] (to_channel_last) or back.
Tensor transpose_blocks(const Tensor& t, const std::vector<Block>& blocks, bool to_channel_last) {
  if (blocks.empty()) return t.contiguous();
  Tensor out = t.clone(at::MemoryFormat::Contiguous);
  const int64_t n = t.size(0);
  for (const Block& b : blocks) {
    const Tensor source = t.narrow(1, b.offset, b.mul * b.d);
    const Tensor moved = to_channel_last ? source.reshape({n, b.mul, b.d}).transpose(1, 2)
                                         : source.reshape({n, b.d, b.mul}).transpose(1, 2);
    out.narrow(1, b.offset, b.mul * b.d).copy_(moved.reshape({n, b.mul * b.d}));
  }
  return out;
}

// The inputs of one pass over the edges (node tensors in the channel-last layout).
template <typename scalar_t>
struct EdgeData {
  const scalar_t *xp, *yp, *wp, *gp;  // features [N, D1], edge_sh [E, D2], weights [E, W], grad_out [N, D3]
  const int64_t *ci, *ni;             // centre, neighbour [E]
  int64_t d1_total, d2_total, w_total, d3_total;
};

// Edges [begin, end) of the forward pass, added into target [N, D3]. Compiled twice, for AVX2 and for any
// x86-64, and chosen when the library loads (the loops over channels vectorise).
template <typename scalar_t>
__attribute__((target_clones("avx2", "default"))) void forward_edges(const EdgeData<scalar_t>& a, const Tables& t,
                                                                      int64_t begin, int64_t end, scalar_t* target) {
  const scalar_t *xp = a.xp, *yp = a.yp, *wp = a.wp;
  const int64_t *ci = a.ci, *ni = a.ni;
  const int64_t d1_total = a.d1_total, d2_total = a.d2_total, w_total = a.w_total, d3_total = a.d3_total;
  for (int64_t k = begin; k < end; ++k) {
    const scalar_t* xe = xp + ni[k] * d1_total;
    const scalar_t* ye = yp + k * d2_total;
    const scalar_t* we = wp + k * w_total;
    scalar_t* oe = target + ci[k] * d3_total;
    for (const Path& p : t.paths) {
      const scalar_t* __restrict__ wu = we + p.w0;
      for (int64_t q = p.k_begin; q < p.k_end; ++q) {
        const Coupling& cp = t.couplings[q];
        const scalar_t cy = scalar_t(cp.c) * ye[p.o2 + cp.m2];
        const scalar_t* __restrict__ xu = xe + p.o1 + cp.m1 * p.mul;
        scalar_t* __restrict__ ou = oe + p.o3 + cp.m3 * p.mul;
#pragma omp simd
        for (int64_t u = 0; u < p.mul; ++u) ou[u] += cy * wu[u] * xu[u];
      }
    }
  }
}

// Edges [begin, end) of the backward pass: grad_features added into gx_target [N, D1] (channel-last),
// grad_sh and grad_weights written per edge (null where not wanted).
template <typename scalar_t>
__attribute__((target_clones("avx2", "default"))) void backward_edges(const EdgeData<scalar_t>& a, const Tables& t,
                                                                       int64_t begin, int64_t end,
                                                                       scalar_t* gx_target, scalar_t* gyp,
                                                                       scalar_t* gwp, bool want_x) {
  const scalar_t *xp = a.xp, *yp = a.yp, *wp = a.wp, *gp = a.gp;
  const int64_t *ci = a.ci, *ni = a.ni;
  const int64_t d1_total = a.d1_total, d2_total = a.d2_total, w_total = a.w_total, d3_total = a.d3_total;
  const bool want_y = gyp != nullptr, want_w = gwp != nullptr;
  for (int64_t k = begin; k < end; ++k) {
    const scalar_t* xe = xp + ni[k] * d1_total;
    const scalar_t* ye = yp + k * d2_total;
    const scalar_t* we = wp + k * w_total;
    const scalar_t* ge = gp + ci[k] * d3_total;
    scalar_t* gxe = gx_target + ni[k] * d1_total;
    scalar_t* gye = want_y ? gyp + k * d2_total : nullptr;
    scalar_t* gwe = want_w ? gwp + k * w_total : nullptr;
    for (const Path& p : t.paths) {
      const scalar_t* __restrict__ wu = we + p.w0;
      for (int64_t q = p.k_begin; q < p.k_end; ++q) {
        const Coupling& cp = t.couplings[q];
        const scalar_t c = scalar_t(cp.c);
        const scalar_t cy = c * ye[p.o2 + cp.m2];
        const scalar_t* __restrict__ xu = xe + p.o1 + cp.m1 * p.mul;
        const scalar_t* __restrict__ gu = ge + p.o3 + cp.m3 * p.mul;
        if (want_x) {
          scalar_t* __restrict__ gxu = gxe + p.o1 + cp.m1 * p.mul;
#pragma omp simd
          for (int64_t u = 0; u < p.mul; ++u) gxu[u] += cy * wu[u] * gu[u];
        }
        if (want_w) {
          scalar_t* __restrict__ gwu = gwe + p.w0;
#pragma omp simd
          for (int64_t u = 0; u < p.mul; ++u) gwu[u] += cy * xu[u] * gu[u];
        }
        if (want_y) {
          scalar_t sum = 0;  // a vectorised sum: partial sums in lanes, in a fixed order
#pragma omp simd reduction(+ : sum)
          for (int64_t u = 0; u < p.mul; ++u) sum += wu[u] * xu[u] * gu[u];
          gye[p.o2 + cp.m2] += c * sum;
        }
      }
    }
  }
}

template <typename scalar_t>
Tensor forward_cpu(const Tensor& x_in, const Tensor& y_in, const Tensor& w_in, const Tensor& centre_in,
                   const Tensor& neighbour_in, const Tables& t, int64_t num_nodes, int64_t d3_total) {
  const std::vector<Block> in_blocks = blocks_of(t.paths, true), out_blocks = blocks_of(t.paths, false);
  const Tensor x = transpose_blocks(x_in, in_blocks, true);
  const Tensor y = y_in.contiguous(), w = w_in.contiguous();
  const Tensor centre = centre_in.contiguous(), neighbour = neighbour_in.contiguous();
  const int64_t e = y.size(0), d1_total = x.size(1), d2_total = y.size(1), w_total = w.size(1);
  const scalar_t* xp = x.data_ptr<scalar_t>();
  const scalar_t* yp = y.data_ptr<scalar_t>();
  const scalar_t* wp = w.data_ptr<scalar_t>();
  const int64_t* ci = centre.data_ptr<int64_t>();
  const int64_t* ni = neighbour.data_ptr<int64_t>();
  check_indices(ci, ni, e, num_nodes);
  Tensor out = at::zeros({num_nodes, d3_total}, x.options());  // channel-last blocks until the end
  const EdgeData<scalar_t> data{xp, yp, wp, nullptr, ci, ni, d1_total, d2_total, w_total, d3_total};
  scatter_over_edges<scalar_t>(e, out, [&](int64_t begin, int64_t end, scalar_t* target) {
    forward_edges<scalar_t>(data, t, begin, end, target);
  });
  return transpose_blocks(out, out_blocks, false);
}

// Gradients of sum(grad_out * out) with respect to features, edge_sh and edge_weights (undefined where not
// wanted).
template <typename scalar_t>
std::vector<Tensor> backward_cpu(const Tensor& g_in, const Tensor& x_in, const Tensor& y_in, const Tensor& w_in,
                                 const Tensor& centre_in, const Tensor& neighbour_in, const Tables& t,
                                 bool want_x, bool want_y, bool want_w) {
  const std::vector<Block> in_blocks = blocks_of(t.paths, true), out_blocks = blocks_of(t.paths, false);
  const Tensor g = transpose_blocks(g_in, out_blocks, true), x = transpose_blocks(x_in, in_blocks, true);
  const Tensor y = y_in.contiguous(), w = w_in.contiguous();
  const Tensor centre = centre_in.contiguous(), neighbour = neighbour_in.contiguous();
  const int64_t e = y.size(0), d1_total = x.size(1), d2_total = y.size(1), w_total = w.size(1), d3_total = g.size(1);
  const scalar_t* gp = g.data_ptr<scalar_t>();
  const scalar_t* xp = x.data_ptr<scalar_t>();
  const scalar_t* yp = y.data_ptr<scalar_t>();
  const scalar_t* wp = w.data_ptr<scalar_t>();
  const int64_t* ci = centre.data_ptr<int64_t>();
  const int64_t* ni = neighbour.data_ptr<int64_t>();
  Tensor gx = at::zeros_like(x);  // channel-last; scattered into, a small [N, D1] even when not wanted
  Tensor gy = want_y ? at::zeros_like(y) : Tensor();
  Tensor gw = want_w ? at::zeros_like(w) : Tensor();
  scalar_t* gyp = want_y ? gy.data_ptr<scalar_t>() : nullptr;
  scalar_t* gwp = want_w ? gw.data_ptr<scalar_t>() : nullptr;
  const EdgeData<scalar_t> data{xp, yp, wp, gp, ci, ni, d1_total, d2_total, w_total, d3_total};
  scatter_over_edges<scalar_t>(e, gx, [&](int64_t begin, int64_t end, scalar_t* gx_target) {
    backward_edges<scalar_t>(data, t, begin, end, gx_target, gyp, gwp, want_x);
  });
  return {want_x ? transpose_blocks(gx, in_blocks, false) : Tensor(), gy, gw};
}

Tensor tp_convolution_cpu(const Tensor& features, const Tensor& edge_sh, const Tensor& edge_weights,
                          const Tensor& centre, const Tensor& neighbour, c10::IntArrayRef paths,
                          c10::IntArrayRef couplings, c10::ArrayRef<double> coefficients, int64_t num_nodes) {
  check_inputs(features, edge_sh, edge_weights, centre, neighbour, num_nodes);
  const int64_t d3_total = output_width(paths);
  const Tables t = read_tables(paths, couplings, coefficients, features.size(1), edge_sh.size(1), edge_weights.size(1),
                               d3_total);
  Tensor out;
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "tp_convolution", [&] {
    out = forward_cpu<scalar_t>(features, edge_sh, edge_weights, centre, neighbour, t, num_nodes, d3_total);
  });
  return out;
}

class TPConvolutionFunction : public torch::autograd::Function<TPConvolutionFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& features, const Tensor& edge_sh, const Tensor& edge_weights,
                        const Tensor& centre, const Tensor& neighbour, c10::IntArrayRef paths,
                        c10::IntArrayRef couplings, c10::ArrayRef<double> coefficients, int64_t num_nodes) {
    ctx->save_for_backward({features, edge_sh, edge_weights, centre, neighbour});
    ctx->saved_data["paths"] = paths.vec();
    ctx->saved_data["couplings"] = couplings.vec();
    ctx->saved_data["coefficients"] = coefficients.vec();
    at::AutoDispatchBelowADInplaceOrView guard;
    return tp_convolution_cpu(features, edge_sh, edge_weights, centre, neighbour, paths, couplings, coefficients,
                              num_nodes);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(!torch::autograd::GradMode::is_enabled(),
                "tp_convolution has first derivatives only: its backward cannot be differentiated again "
                "(create_graph=True, as in training on forces). Switch the fused convolution off for that "
                "(equiforce.nn.set_fused_convolution(model, False)).");
    const auto saved = ctx->get_saved_variables();
    const Tensor& features = saved[0];
    const Tensor& edge_sh = saved[1];
    const Tensor& edge_weights = saved[2];
    variable_list none(9);
    if (!grads[0].defined()) return none;
    const std::vector<int64_t> paths = ctx->saved_data["paths"].toIntVector();
    const std::vector<int64_t> couplings = ctx->saved_data["couplings"].toIntVector();
    const std::vector<double> coefficients = ctx->saved_data["coefficients"].toDoubleVector();
    const Tables t = read_tables(paths, couplings, coefficients, features.size(1), edge_sh.size(1),
                                 edge_weights.size(1), grads[0].size(1));
    std::vector<Tensor> g;
    AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "tp_convolution_backward", [&] {
      g = backward_cpu<scalar_t>(grads[0].to(features.scalar_type()), features, edge_sh, edge_weights, saved[3],
                                 saved[4], t, ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                 ctx->needs_input_grad(2));
    });
    none[0] = g[0];
    none[1] = g[1];
    none[2] = g[2];
    return none;
  }
};

Tensor tp_convolution_autograd(const Tensor& features, const Tensor& edge_sh, const Tensor& edge_weights,
                               const Tensor& centre, const Tensor& neighbour, c10::IntArrayRef paths,
                               c10::IntArrayRef couplings, c10::ArrayRef<double> coefficients, int64_t num_nodes) {
  check_inputs(features, edge_sh, edge_weights, centre, neighbour, num_nodes);
  return TPConvolutionFunction::apply(features, edge_sh, edge_weights, centre, neighbour, paths, couplings,
                                      coefficients, num_nodes);
}

}  // namespace
}  // namespace equiforce

TORCH_LIBRARY_FRAGMENT(equiforce, m) {
  m.def(
      "tp_convolution(Tensor features, Tensor edge_sh, Tensor edge_weights, Tensor centre, Tensor neighbour, "
      "int[] paths, int[] couplings, float[] coefficients, int num_nodes) -> Tensor");
}

TORCH_LIBRARY_IMPL(equiforce, CPU, m) { m.impl("tp_convolution", &equiforce::tp_convolution_cpu); }

TORCH_LIBRARY_IMPL(equiforce, Autograd, m) { m.impl("tp_convolution", &equiforce::tp_convolution_autograd); }
