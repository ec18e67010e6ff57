// SiLU with eager autograd inside TorchScript.
//
//   torch.ops.equiforce.silu(x) -> x * sigmoid(x)   (any device and floating dtype: ATen's own kernels)
//
// TorchScript's autodiff writes the derivative of aten::silu as a chain of elementwise ops (sigmoid, neg, add,
// mul: five passes over the tensor); on the radial MLPs' [E, hidden] tensors that chain was half of an exported
// model's step at 1536 atoms. An op it has no formula for stays outside its differentiable graphs, so autograd
// runs this function's backward: ATen's fused silu_backward, as in eager mode. When the backward itself is
// to be differentiated (create_graph, training on forces), it is written with differentiable ops instead,
// the form eager autograd uses then.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace equiforce {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class SiluFunction : public torch::autograd::Function<SiluFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x) {
    ctx->save_for_backward({x});
    at::AutoDispatchBelowADInplaceOrView guard;
    return at::silu(x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Tensor x = ctx->get_saved_variables()[0];  // a copy: the list returned is a temporary
    if (!grads[0].defined()) return {Tensor()};
    if (torch::autograd::GradMode::is_enabled()) {  // a graph for second derivatives: the composite form
      const Tensor sigmoid = x.sigmoid();
      return {grads[0] * sigmoid * (1.0 + x * (1.0 - sigmoid))};
    }
    return {at::silu_backward(grads[0], x)};  // forces: ATen's fused kernel
  }
};

Tensor silu_autograd(const Tensor& x) { return SiluFunction::apply(x); }

Tensor silu_plain(const Tensor& x) { return at::silu(x); }

}  // namespace
}  // namespace equiforce

TORCH_LIBRARY_FRAGMENT(equiforce, m) { m.def("silu(Tensor x) -> Tensor"); }

TORCH_LIBRARY_IMPL(equiforce, Autograd, m) { m.impl("silu", &equiforce::silu_autograd); }

TORCH_LIBRARY_IMPL(equiforce, CompositeExplicitAutograd, m) { m.impl("silu", &equiforce::silu_plain); }
