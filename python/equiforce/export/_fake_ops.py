"""The native ops of an exported model in a form torch.export can trace: ``equiforce_export::*``.

``torch.ops.equiforce.tp_convolution`` and ``radial_spline`` (``plugin/``) have CPU kernels and C++ autograd
functions, but no shape ("fake") kernels and no backward op that a tracer could record: torch.export cannot
follow them. This module registers, from Python, an op of each with a fake kernel and an autograd formula whose
backward is itself an op, each calling the native CPU kernel:

    tp_convolution(...) -> [num_nodes, width]        tp_convolution_backward(grad, ...) -> (d features, d sh, d w)
    radial_spline(lengths, table, spacing) -> [E, W]  radial_spline_backward(grad, lengths, table, spacing) -> [E]

The backward ops run the native forward again under autograd and take its native backward (first derivatives
only, as the native ops have), so a compiled graph calls native code throughout; the price is one extra forward
of each op per force evaluation. :func:`traceable_native_ops` points ``torch.ops.equiforce.<op>`` at these ops
while a model is traced, and back after. A package that calls them needs this module imported to run
(:mod:`equiforce.openmm._pythonforce` does).
"""
import contextlib
from typing import Iterator, List, Tuple

import torch
from torch import Tensor

from .. import ops as _native_ops  # noqa: F401  (registers torch.ops.equiforce.*)

_NATIVE_CONVOLUTION = torch.ops.equiforce.tp_convolution.default
_NATIVE_SPLINE = torch.ops.equiforce.radial_spline.default
#: Entries per path row of the convolution tables: (o1, d1, o2, o3, d3, w0, mul, k_begin, k_end).
_PATH_ROW = 9


def convolution_width(paths: List[int]) -> int:
    """Width of the convolution's output, [num_nodes, width]: the end of the last output block of its paths."""
    return max(paths[r + 3] + paths[r + 6] * paths[r + 4] for r in range(0, len(paths), _PATH_ROW))


@contextlib.contextmanager
def _autograd_again() -> Iterator[None]:
    """Inside a custom op's kernel autograd is switched off (its dispatch keys are excluded): switch it on
    again, so that the native op's own backward can be taken there."""
    include = torch._C._dispatch_tls_local_include_set()
    exclude = torch._C._dispatch_tls_local_exclude_set()
    for key in (torch._C.DispatchKey.AutogradCPU, torch._C.DispatchKey.AutogradCUDA,
                torch._C.DispatchKey.ADInplaceOrView):
        exclude = exclude.remove(key)
    with torch._C._ForceDispatchKeyGuard(include, exclude), torch.enable_grad():
        yield


@torch.library.custom_op("equiforce_export::tp_convolution", mutates_args=())
def tp_convolution(features: Tensor, edge_sh: Tensor, edge_weights: Tensor, centre: Tensor, neighbour: Tensor,
                   paths: List[int], couplings: List[int], coefficients: List[float], num_nodes: int) -> Tensor:
    """The native fused convolution (gather, tensor product, scatter): -> [num_nodes, width]."""
    with torch.no_grad():
        return _NATIVE_CONVOLUTION(features, edge_sh, edge_weights, centre, neighbour, paths, couplings,
                                   coefficients, num_nodes)


@tp_convolution.register_fake
def _(features, edge_sh, edge_weights, centre, neighbour, paths, couplings, coefficients, num_nodes):
    return features.new_empty((num_nodes, convolution_width(paths)))


@torch.library.custom_op("equiforce_export::tp_convolution_backward", mutates_args=())
def tp_convolution_backward(grad: Tensor, features: Tensor, edge_sh: Tensor, edge_weights: Tensor, centre: Tensor,
                            neighbour: Tensor, paths: List[int], couplings: List[int], coefficients: List[float],
                            num_nodes: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Gradients of ``(grad * tp_convolution(...)).sum()`` with respect to features, edge_sh, edge_weights."""
    inputs = [t.detach().requires_grad_(True) for t in (features, edge_sh, edge_weights)]
    with _autograd_again():
        out = _NATIVE_CONVOLUTION(*inputs, centre, neighbour, paths, couplings, coefficients, num_nodes)
        gradients = torch.autograd.grad(out, inputs, grad)
    return tuple(g.contiguous() for g in gradients)


@tp_convolution_backward.register_fake
def _(grad, features, edge_sh, edge_weights, centre, neighbour, paths, couplings, coefficients, num_nodes):
    return torch.empty_like(features), torch.empty_like(edge_sh), torch.empty_like(edge_weights)


def _convolution_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs[:5])
    ctx.tables = inputs[5:]


def _convolution_gradient(ctx, grad):
    features, edge_sh, edge_weights, centre, neighbour = ctx.saved_tensors
    gx, gy, gw = tp_convolution_backward(grad, features, edge_sh, edge_weights, centre, neighbour, *ctx.tables)
    return gx, gy, gw, None, None, None, None, None, None


tp_convolution.register_autograd(_convolution_gradient, setup_context=_convolution_setup)


@torch.library.custom_op("equiforce_export::radial_spline", mutates_args=())
def radial_spline(lengths: Tensor, table: Tensor, spacing: float) -> Tensor:
    """The native radial-table interpolation: lengths [E] Å, table [K, 2, W] -> [E, W]."""
    with torch.no_grad():
        return _NATIVE_SPLINE(lengths, table, spacing)


@radial_spline.register_fake
def _(lengths, table, spacing):
    return lengths.new_empty((lengths.shape[0], table.shape[2]))


@torch.library.custom_op("equiforce_export::radial_spline_backward", mutates_args=())
def radial_spline_backward(grad: Tensor, lengths: Tensor, table: Tensor, spacing: float) -> Tensor:
    """Gradient of ``(grad * radial_spline(lengths, table, spacing)).sum()`` with respect to the lengths [E]."""
    lengths = lengths.detach().requires_grad_(True)
    with _autograd_again():
        (gradient,) = torch.autograd.grad(_NATIVE_SPLINE(lengths, table, spacing), lengths, grad)
    return gradient


@radial_spline_backward.register_fake
def _(grad, lengths, table, spacing):
    return torch.empty_like(lengths)


def _spline_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0], inputs[1])
    ctx.spacing = inputs[2]


def _spline_gradient(ctx, grad):
    lengths, table = ctx.saved_tensors
    return radial_spline_backward(grad, lengths, table, ctx.spacing), None, None


radial_spline.register_autograd(_spline_gradient, setup_context=_spline_setup)


@contextlib.contextmanager
def traceable_native_ops() -> Iterator[None]:
    """While inside, ``torch.ops.equiforce.tp_convolution`` and ``radial_spline`` (as the interaction blocks call
    them) are the traceable ops of this module; restored after. For tracing only: not thread-safe."""
    namespace = torch.ops.equiforce
    saved = {name: getattr(namespace, name) for name in ("tp_convolution", "radial_spline")}
    setattr(namespace, "tp_convolution", torch.ops.equiforce_export.tp_convolution)
    setattr(namespace, "radial_spline", torch.ops.equiforce_export.radial_spline)
    try:
        yield
    finally:
        for name, op in saved.items():
            setattr(namespace, name, op)
