// Tabulated radial functions: cubic Hermite interpolation of a smooth function of the edge length.
//
//   torch.ops.equiforce.radial_spline(lengths [E], table [K, 2, W], spacing) -> [E, W]
//
// table[k, 0] holds the W function values at the knot r_k = k * spacing, table[k, 1] their derivatives d/dr
// (per unit of length). For r in [r_k, r_k+1], t = r / spacing - k and
//
//   f(r) = h00(t) f_k + spacing h10(t) f'_k + h01(t) f_k+1 + spacing h11(t) f'_k+1
//
// with the cubic Hermite basis h00 = 2t^3 - 3t^2 + 1, h10 = t^3 - 2t^2 + t, h01 = -2t^3 + 3t^2, h11 = t^3 - t^2.
// The interpolant has continuous values and first derivatives, and its gradient (the backward here) is the exact
// derivative of the interpolant, so energies built on it stay conservative. At and beyond the last knot,
// r >= (K - 1) spacing, the output is exactly 0 with zero derivative: the tabulated function must vanish there
// (the radial MLPs of equiforce do: their input, the enveloped Bessel basis, is zero from the cutoff on).
// A NaN length gives a NaN row; a negative length raises.
//
// Used by exported models in place of the per-edge radial MLPs (equiforce/nn/_radial_table.py), whose matrix
// products and activations were a third of a CPU step. Autograd: first derivative with respect to the
// lengths only. The table is a constant: one that requires grad raises, as does a double backward.
// CPU only; CUDA inputs raise (the models keep their radial MLPs on a GPU).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cmath>

namespace equiforce {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kEdgesPerTask = 256;

void check_inputs(const Tensor& lengths, const Tensor& table, double spacing) {
  TORCH_CHECK(lengths.dim() == 1, "radial_spline: lengths must be 1-D [E], got ", lengths.sizes());
  TORCH_CHECK(table.dim() == 3 && table.size(0) >= 2 && table.size(1) == 2,
              "radial_spline: table must be [K, 2, W] (values and derivatives at K >= 2 knots), got ", table.sizes());
  TORCH_CHECK(lengths.scalar_type() == table.scalar_type(), "radial_spline: lengths (", lengths.scalar_type(),
              ") and table (", table.scalar_type(), ") must have one dtype");
  TORCH_CHECK(lengths.scalar_type() == at::kFloat || lengths.scalar_type() == at::kDouble,
              "radial_spline: float32 or float64 inputs, got ", lengths.scalar_type());
  TORCH_CHECK(lengths.device().is_cpu() && table.device().is_cpu(), "radial_spline runs on the CPU only (got lengths on ",
              lengths.device(), " and the table on ", table.device(),
              "); equiforce models keep their radial MLPs on other devices");
  TORCH_CHECK(std::isfinite(spacing) && spacing > 0, "radial_spline: spacing must be a positive length, got ", spacing);
}

// Segment of r and its Hermite weights; false where the output is zero (r at or past the last knot).
template <typename scalar_t>
inline bool segment(scalar_t r, scalar_t inverse_spacing, int64_t last_segment, int64_t& k, scalar_t& t) {
  const scalar_t s = r * inverse_spacing;
  if (!(s < scalar_t(last_segment + 1))) return false;
  k = std::min<int64_t>(int64_t(s), last_segment);
  t = s - scalar_t(k);
  return true;
}

// First negative length, or -1.
template <typename scalar_t>
int64_t first_negative(const scalar_t* r, int64_t e) {
  for (int64_t i = 0; i < e; ++i) {
    if (r[i] < scalar_t(0)) return i;
  }
  return -1;
}

template <typename scalar_t>
__attribute__((target_clones("avx2", "default"))) void forward_rows(const scalar_t* r, const scalar_t* table,
                                                                    scalar_t* out, int64_t begin, int64_t end,
                                                                    int64_t w_total, int64_t last_segment,
                                                                    scalar_t spacing) {
  const scalar_t inverse_spacing = scalar_t(1) / spacing;
  for (int64_t e = begin; e < end; ++e) {
    scalar_t* row = out + e * w_total;
    int64_t k;
    scalar_t t;
    if (std::isnan(r[e])) {
      for (int64_t w = 0; w < w_total; ++w) row[w] = r[e];
      continue;
    }
    if (!segment(r[e], inverse_spacing, last_segment, k, t)) {
      for (int64_t w = 0; w < w_total; ++w) row[w] = scalar_t(0);
      continue;
    }
    const scalar_t t2 = t * t, t3 = t2 * t;
    const scalar_t c0 = 2 * t3 - 3 * t2 + 1, c1 = spacing * (t3 - 2 * t2 + t);
    const scalar_t c2 = 3 * t2 - 2 * t3, c3 = spacing * (t3 - t2);
    const scalar_t* v0 = table + k * 2 * w_total;  // values at knot k, then their derivatives, then knot k + 1
    const scalar_t* d0 = v0 + w_total;
    const scalar_t* v1 = d0 + w_total;
    const scalar_t* d1 = v1 + w_total;
#pragma omp simd
    for (int64_t w = 0; w < w_total; ++w) row[w] = c0 * v0[w] + c1 * d0[w] + c2 * v1[w] + c3 * d1[w];
  }
}

template <typename scalar_t>
__attribute__((target_clones("avx2", "default"))) void backward_rows(const scalar_t* r, const scalar_t* table,
                                                                     const scalar_t* grad, scalar_t* grad_r,
                                                                     int64_t begin, int64_t end, int64_t w_total,
                                                                     int64_t last_segment, scalar_t spacing) {
  const scalar_t inverse_spacing = scalar_t(1) / spacing;
  for (int64_t e = begin; e < end; ++e) {
    int64_t k;
    scalar_t t;
    if (std::isnan(r[e])) {
      grad_r[e] = r[e];
      continue;
    }
    if (!segment(r[e], inverse_spacing, last_segment, k, t)) {
      grad_r[e] = scalar_t(0);
      continue;
    }
    const scalar_t t2 = t * t;
    // d/dr of the Hermite weights (d/dt divided by the spacing)
    const scalar_t c0 = (6 * t2 - 6 * t) * inverse_spacing, c1 = 3 * t2 - 4 * t + 1;
    const scalar_t c2 = (6 * t - 6 * t2) * inverse_spacing, c3 = 3 * t2 - 2 * t;
    const scalar_t* v0 = table + k * 2 * w_total;
    const scalar_t* d0 = v0 + w_total;
    const scalar_t* v1 = d0 + w_total;
    const scalar_t* d1 = v1 + w_total;
    const scalar_t* g = grad + e * w_total;
    scalar_t sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t w = 0; w < w_total; ++w) sum += g[w] * (c0 * v0[w] + c1 * d0[w] + c2 * v1[w] + c3 * d1[w]);
    grad_r[e] = sum;
  }
}

Tensor radial_spline_cpu(const Tensor& lengths_in, const Tensor& table_in, double spacing) {
  check_inputs(lengths_in, table_in, spacing);
  const Tensor lengths = lengths_in.contiguous();
  const Tensor table = table_in.contiguous();
  const int64_t e = lengths.size(0), w_total = table.size(2), last_segment = table.size(0) - 2;
  Tensor out = at::empty({e, w_total}, lengths.options());
  AT_DISPATCH_FLOATING_TYPES(lengths.scalar_type(), "radial_spline", [&] {
    const scalar_t* r = lengths.data_ptr<scalar_t>();
    const int64_t bad = first_negative(r, e);
    TORCH_CHECK(bad < 0, "radial_spline: edge ", bad, " has a negative length (", double(r[bad]), ")");
    const scalar_t* tp = table.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, e, kEdgesPerTask, [&](int64_t begin, int64_t end) {
      forward_rows<scalar_t>(r, tp, op, begin, end, w_total, last_segment, scalar_t(spacing));
    });
  });
  return out;
}

Tensor radial_spline_backward_cpu(const Tensor& grad_in, const Tensor& lengths, const Tensor& table, double spacing) {
  const Tensor grad = grad_in.to(lengths.scalar_type()).contiguous();
  const int64_t e = lengths.size(0), w_total = table.size(2), last_segment = table.size(0) - 2;
  TORCH_CHECK(grad.dim() == 2 && grad.size(0) == e && grad.size(1) == w_total, "radial_spline: gradient of shape ",
              grad.sizes(), " for an output of shape [", e, ", ", w_total, "]");
  Tensor grad_r = at::empty({e}, lengths.options());
  AT_DISPATCH_FLOATING_TYPES(lengths.scalar_type(), "radial_spline_backward", [&] {
    const scalar_t* r = lengths.data_ptr<scalar_t>();
    const scalar_t* tp = table.data_ptr<scalar_t>();
    const scalar_t* gp = grad.data_ptr<scalar_t>();
    scalar_t* out = grad_r.data_ptr<scalar_t>();
    at::parallel_for(0, e, kEdgesPerTask, [&](int64_t begin, int64_t end) {
      backward_rows<scalar_t>(r, tp, gp, out, begin, end, w_total, last_segment, scalar_t(spacing));
    });
  });
  return grad_r;
}

class RadialSplineFunction : public torch::autograd::Function<RadialSplineFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& lengths, const Tensor& table, double spacing) {
    const Tensor lengths_c = lengths.contiguous();
    const Tensor table_c = table.contiguous();
    ctx->save_for_backward({lengths_c, table_c});
    ctx->saved_data["spacing"] = spacing;
    at::AutoDispatchBelowADInplaceOrView guard;
    return radial_spline_cpu(lengths_c, table_c, spacing);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(!torch::autograd::GradMode::is_enabled(),
                "radial_spline has first derivatives only: its backward cannot be differentiated again "
                "(create_graph=True, as in training on forces). Use the radial MLPs for that "
                "(equiforce.nn.set_radial_table(model, None)).");
    const auto saved = ctx->get_saved_variables();
    if (!grads[0].defined() || !ctx->needs_input_grad(0)) return {Tensor(), Tensor(), Tensor()};
    return {radial_spline_backward_cpu(grads[0], saved[0], saved[1], ctx->saved_data["spacing"].toDouble()), Tensor(),
            Tensor()};
  }
};

Tensor radial_spline_autograd(const Tensor& lengths, const Tensor& table, double spacing) {
  check_inputs(lengths, table, spacing);
  TORCH_CHECK(!(table.requires_grad() && torch::autograd::GradMode::is_enabled()),
              "radial_spline: the table is a constant (tabulated from radial MLPs) and has no gradient; "
              "train the MLPs instead (equiforce.nn.set_radial_table(model, None))");
  return RadialSplineFunction::apply(lengths, table, spacing);
}

}  // namespace
}  // namespace equiforce

TORCH_LIBRARY_FRAGMENT(equiforce, m) { m.def("radial_spline(Tensor lengths, Tensor table, float spacing) -> Tensor"); }

TORCH_LIBRARY_IMPL(equiforce, CPU, m) { m.impl("radial_spline", &equiforce::radial_spline_cpu); }

TORCH_LIBRARY_IMPL(equiforce, Autograd, m) { m.impl("radial_spline", &equiforce::radial_spline_autograd); }
