// Schema, input checks and autograd of the equiforce neighbour-list ops.
//
//   torch.ops.equiforce.neighbor_list(positions, cutoff, box=None, return_shifts=False)
//       -> (pairs [2, E] int64, vectors [E, 3], shifts [E, 3] or [0, 3])
//   torch.ops.equiforce.neighbor_list_fixed(positions, cutoff, max_pairs, box=None, return_shifts=False)
//       -> (pairs [2, max_pairs], vectors [max_pairs, 3], shifts [max_pairs, 3] or [0, 3],
//           num_pairs [] int64, overflow [] bool)
//
// The backends (neighbors_cpu.cpp, neighbors_cuda.cu) produce plain values. The Autograd kernel here makes
// `vectors` = r_j - r_i + shifts @ box differentiable with respect to positions and box. Its backward is a
// custom function (a single pass on the CPU) that is itself differentiable, so double backward (training on
// forces) works. See python/equiforce/ops.py for the user-facing documentation.
#include <torch/autograd.h>
#include <torch/library.h>

#include <cmath>
#include <sstream>

#include "cell_grid.h"
#include "neighbors.h"

namespace equiforce {

using at::Tensor;

void check_inputs(const Tensor& positions, double cutoff, const std::optional<Tensor>& box, const char* op_name) {
  TORCH_CHECK(positions.dim() == 2 && positions.size(1) == 3, op_name, ": positions must have shape [N, 3], got ",
              positions.sizes());
  TORCH_CHECK(positions.scalar_type() == at::kFloat || positions.scalar_type() == at::kDouble, op_name,
              ": positions must be float32 or float64, got ", positions.scalar_type());
  TORCH_CHECK(positions.size(0) < (int64_t(1) << 31), op_name, ": at most 2^31 - 1 atoms are supported, got ",
              positions.size(0));
  TORCH_CHECK(std::isfinite(cutoff) && cutoff > 0.0, op_name, ": cutoff must be a positive finite number, got ",
              cutoff);
  if (box.has_value()) {
    const Tensor& b = *box;
    TORCH_CHECK(b.dim() == 2 && b.size(0) == 3 && b.size(1) == 3, op_name,
                ": box must have shape [3, 3] (rows are the lattice vectors a, b, c), got ", b.sizes());
    TORCH_CHECK(b.scalar_type() == positions.scalar_type(), op_name, ": box dtype (", b.scalar_type(),
                ") must match positions dtype (", positions.scalar_type(), ")");
    TORCH_CHECK(b.device() == positions.device(), op_name, ": box is on ", b.device(), " but positions are on ",
                positions.device());
  }
}

void check_max_pairs(int64_t max_pairs) {
  TORCH_CHECK(max_pairs >= 0, "neighbor_list_fixed: max_pairs must be >= 0, got ", max_pairs);
}

std::string describe_box_problem(const double* box, double cutoff) {
  static const char* names[3] = {"a (row 0)", "b (row 1)", "c (row 2)"};
  std::ostringstream msg;
  double len[3];
  for (int k = 0; k < 3; ++k) {
    const double* v = box + 3 * k;
    if (!all_finite(v, 3)) {
      msg << "box vector " << names[k] << " is not finite: (" << v[0] << ", " << v[1] << ", " << v[2] << ")";
      return msg.str();
    }
    len[k] = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    if (!(len[k] > 0.0)) {
      msg << "box vector " << names[k] << " has zero length";
      return msg.str();
    }
  }
  CellGrid g;
  make_grid(g, box, nullptr, nullptr, cutoff, 1, 1);
  if (g.status & kBoxDegenerate) {
    const double* B = box;
    const double det = B[0] * (B[4] * B[8] - B[5] * B[7]) - B[1] * (B[3] * B[8] - B[5] * B[6]) +
                       B[2] * (B[3] * B[7] - B[4] * B[6]);
    msg << "box vectors are linearly dependent (volume " << det << " for |a| |b| |c| = " << len[0] * len[1] * len[2]
        << "); the rows of box must be three independent lattice vectors";
    return msg.str();
  }
  if (g.status & kBoxTooSmall) {
    const double* B = box;
    const double det = std::fabs(B[0] * (B[4] * B[8] - B[5] * B[7]) - B[1] * (B[3] * B[8] - B[5] * B[6]) +
                                 B[2] * (B[3] * B[7] - B[4] * B[6]));
    for (int k = 0; k < 3; ++k) {
      const double* u = box + 3 * ((k + 1) % 3);
      const double* v = box + 3 * ((k + 2) % 3);
      const double cx = u[1] * v[2] - u[2] * v[1], cy = u[2] * v[0] - u[0] * v[2], cz = u[0] * v[1] - u[1] * v[0];
      const double height = det / std::sqrt(cx * cx + cy * cy + cz * cz);
      if (cutoff / height > kMaxReach * 0.999) {
        msg << "box too small for the cutoff: the box height across vector " << names[k] << " is " << height
            << " but the cutoff is " << cutoff << " (at most " << kMaxReach << " box heights are supported)";
        return msg.str();
      }
    }
    msg << "box too small for the cutoff " << cutoff;
    return msg.str();
  }
  return "";
}

std::string describe_status(int32_t status, const double* box, double cutoff) {
  if (status & (kBoxNotFinite | kBoxDegenerate | kBoxTooSmall)) {
    if (box != nullptr) {
      std::string what = describe_box_problem(box, cutoff);
      if (!what.empty()) return what;
    }
    return "invalid box (not finite, degenerate or too small for the cutoff)";
  }
  if (status & kPositionsNotFinite) return "positions contain NaN or Inf";
  return "";
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using DynamicSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, double, const std::optional<Tensor>&, bool);
using FixedSig = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>(const Tensor&, double, int64_t,
                                                                     const std::optional<Tensor>&, bool);

const c10::TypedOperatorHandle<DynamicSig>& dynamic_op() {
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("equiforce::neighbor_list", "").typed<DynamicSig>();
  return op;
}

const c10::TypedOperatorHandle<FixedSig>& fixed_op() {
  static auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("equiforce::neighbor_list_fixed", "").typed<FixedSig>();
  return op;
}

// ------------------------------------------------------------------------------------------------ autograd
// vectors[k] = positions[j] - positions[i] + shifts[k] @ box is linear in (positions, box). Its adjoint maps a
// gradient g [E, 3] to grad_positions[a] = sum_{k: j_k = a} g_k - sum_{k: i_k = a} g_k and
// grad_box = shifts^T g. Padding pairs (i = j = -1, fixed-capacity op) contribute nothing.

// Adjoint on the CPU: one deterministic pass (index_add is several times slower at a million pairs).
template <typename scalar_t>
void adjoint_cpu(const Tensor& g, const Tensor& pairs, const Tensor* shifts, int64_t n, Tensor& grad_positions,
                 Tensor* grad_box) {
  const int64_t e = g.size(0);
  const scalar_t* gg = g.data_ptr<scalar_t>();
  const int64_t* pi = pairs.data_ptr<int64_t>();
  const int64_t* pj = pi + pairs.stride(0);
  scalar_t* out = grad_positions.data_ptr<scalar_t>();
  const scalar_t* sh = shifts != nullptr ? shifts->data_ptr<scalar_t>() : nullptr;
  double box[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t k = 0; k < e; ++k) {
    const int64_t i = pi[k], j = pj[k];
    if (i < 0) continue;
    TORCH_CHECK(i < n && j >= 0 && j < n, "neighbor_list backward: pair ", k, " (", i, ", ", j, ") out of range");
    for (int d = 0; d < 3; ++d) {
      out[3 * j + d] += gg[3 * k + d];
      out[3 * i + d] -= gg[3 * k + d];
    }
    if (sh != nullptr) {
      for (int a = 0; a < 3; ++a) {
        for (int d = 0; d < 3; ++d) box[3 * a + d] += double(sh[3 * k + a]) * double(gg[3 * k + d]);
      }
    }
  }
  if (grad_box != nullptr) {
    scalar_t* gb = grad_box->data_ptr<scalar_t>();
    for (int k = 0; k < 9; ++k) gb[k] = scalar_t(box[k]);
  }
}

// (g [E, 3]) -> (grad_positions [N, 3], grad_box [3, 3] or undefined). Differentiable in g: its own adjoint
// is the forward map applied to the incoming gradients, so double backward (force training) works.
class VectorsAdjoint : public torch::autograd::Function<VectorsAdjoint> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& g_in, const Tensor& pairs, const Tensor& shifts,
                               int64_t n, bool padded, bool box_grad) {
    ctx->save_for_backward({pairs, box_grad ? shifts : Tensor()});
    ctx->saved_data["padded"] = padded;
    ctx->saved_data["box_grad"] = box_grad;
    const Tensor g = g_in.contiguous();
    Tensor grad_positions, grad_box;
    if (g.device().is_cpu()) {
      grad_positions = at::zeros({n, 3}, g.options());
      if (box_grad) grad_box = at::empty({3, 3}, g.options());
      const Tensor sh = box_grad ? shifts.to(g.scalar_type()).contiguous() : Tensor();
      const Tensor pr = pairs.contiguous();
      AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "neighbor_list_backward", [&] {
        adjoint_cpu<scalar_t>(g, pr, box_grad ? &sh : nullptr, n, grad_positions, box_grad ? &grad_box : nullptr);
      });
    } else {
      Tensor i = pairs[0], j = pairs[1], gm = g;
      if (padded) {
        gm = g * i.ge(0).unsqueeze(1).to(g.scalar_type());
        i = i.clamp_min(0);
        j = j.clamp_min(0);
      }
      grad_positions = at::zeros({n, 3}, g.options()).index_add(0, j, gm).index_add(0, i, gm, -1);
      if (box_grad) grad_box = shifts.to(g.scalar_type()).t().mm(gm);
    }
    if (!box_grad) grad_box = at::empty({0}, g.options());  // placeholder: outputs must be defined
    return {grad_positions, grad_box};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor& pairs = saved[0];
    Tensor i = pairs[0], j = pairs[1];
    const bool padded = ctx->saved_data["padded"].toBool();
    if (padded) {
      i = i.clamp_min(0);
      j = j.clamp_min(0);
    }
    Tensor grad_g;
    if (grads[0].defined()) grad_g = grads[0].index_select(0, j) - grads[0].index_select(0, i);
    if (ctx->saved_data["box_grad"].toBool() && grads[1].defined() && grads[1].numel() == 9) {
      Tensor term = saved[1].to(grads[1].scalar_type()).mm(grads[1]);
      grad_g = grad_g.defined() ? grad_g + term : term;
    }
    if (grad_g.defined() && padded) grad_g = grad_g * pairs[0].ge(0).unsqueeze(1).to(grad_g.scalar_type());
    return {grad_g, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

class NeighborListFunction : public torch::autograd::Function<NeighborListFunction> {
 public:
  // max_pairs < 0 selects the dynamic op.
  static variable_list forward(AutogradContext* ctx, const Tensor& positions, double cutoff,
                               const std::optional<Tensor>& box, bool return_shifts, int64_t max_pairs) {
    const bool box_grad = box.has_value() && box->requires_grad();
    const bool fixed = max_pairs >= 0;
    variable_list out;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      if (fixed) {
        auto r = fixed_op().call(positions, cutoff, max_pairs, box, return_shifts || box_grad);
        out = {std::get<0>(r), std::get<1>(r), std::get<2>(r), std::get<3>(r), std::get<4>(r)};
      } else {
        auto r = dynamic_op().call(positions, cutoff, box, return_shifts || box_grad);
        out = {std::get<0>(r), std::get<1>(r), std::get<2>(r)};
      }
    }
    ctx->saved_data["n_atoms"] = positions.size(0);
    ctx->saved_data["padded"] = fixed;
    ctx->saved_data["box_grad"] = box_grad;
    ctx->save_for_backward({out[0], box_grad ? out[2] : Tensor()});
    if (box_grad && !return_shifts) out[2] = at::empty({0, 3}, positions.options());
    for (size_t k = 0; k < out.size(); ++k) {
      if (k != 1) ctx->mark_non_differentiable({out[k]});
    }
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list none(5);
    const Tensor& g = grads[1];  // [E, 3]
    if (!g.defined()) return none;
    const auto saved = ctx->get_saved_variables();
    const bool box_grad = ctx->saved_data["box_grad"].toBool();
    auto adj = VectorsAdjoint::apply(g, saved[0], box_grad ? saved[1] : at::empty({0, 3}, g.options()),
                                     ctx->saved_data["n_atoms"].toInt(), ctx->saved_data["padded"].toBool(),
                                     box_grad);
    return {adj[0], Tensor(), box_grad ? adj[1] : Tensor(), Tensor(), Tensor()};
  }
};

std::tuple<Tensor, Tensor, Tensor> neighbor_list_autograd(const Tensor& positions, double cutoff,
                                                          const std::optional<Tensor>& box, bool return_shifts) {
  check_inputs(positions, cutoff, box, "neighbor_list");
  auto out = NeighborListFunction::apply(positions, cutoff, box, return_shifts, int64_t(-1));
  return {out[0], out[1], out[2]};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> neighbor_list_fixed_autograd(const Tensor& positions, double cutoff,
                                                                                int64_t max_pairs,
                                                                                const std::optional<Tensor>& box,
                                                                                bool return_shifts) {
  check_inputs(positions, cutoff, box, "neighbor_list_fixed");
  check_max_pairs(max_pairs);
  auto out = NeighborListFunction::apply(positions, cutoff, box, return_shifts, max_pairs);
  return {out[0], out[1], out[2], out[3], out[4]};
}

#ifndef EQUIFORCE_WITH_CUDA
[[noreturn]] void no_cuda() {
  TORCH_CHECK(false,
              "equiforce was built without CUDA support, so its neighbour-list op cannot run on CUDA tensors. "
              "Rebuild on a machine whose CUDA toolkit matches torch.version.cuda: "
              "EQUIFORCE_BUILD_CUDA=1 pip install --no-build-isolation -e .");
}
std::tuple<Tensor, Tensor, Tensor> neighbor_list_no_cuda(const Tensor&, double, const std::optional<Tensor>&, bool) {
  no_cuda();
}
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> neighbor_list_fixed_no_cuda(const Tensor&, double, int64_t,
                                                                               const std::optional<Tensor>&, bool) {
  no_cuda();
}
#endif

}  // namespace
}  // namespace equiforce

TORCH_LIBRARY(equiforce, m) {
  m.def(
      "neighbor_list(Tensor positions, float cutoff, Tensor? box=None, bool return_shifts=False) "
      "-> (Tensor pairs, Tensor vectors, Tensor shifts)");
  m.def(
      "neighbor_list_fixed(Tensor positions, float cutoff, int max_pairs, Tensor? box=None, "
      "bool return_shifts=False) -> (Tensor pairs, Tensor vectors, Tensor shifts, Tensor num_pairs, "
      "Tensor overflow)");
}

TORCH_LIBRARY_IMPL(equiforce, Autograd, m) {
  m.impl("neighbor_list", &equiforce::neighbor_list_autograd);
  m.impl("neighbor_list_fixed", &equiforce::neighbor_list_fixed_autograd);
}

#ifndef EQUIFORCE_WITH_CUDA
TORCH_LIBRARY_IMPL(equiforce, CUDA, m) {
  m.impl("neighbor_list", &equiforce::neighbor_list_no_cuda);
  m.impl("neighbor_list_fixed", &equiforce::neighbor_list_fixed_no_cuda);
}
#endif
