"""Stand-in for NequIP's ``TensorProductScatter`` that runs equiforce's fused convolution op on the CPU.

Same call, same values: ``forward(x [N, in.dim], edge_attr [E, sh.dim], edge_weight [E, W], edge_dst [E],
edge_src [E]) -> [N, mid.dim]``, the sum over the edges e with edge_dst[e] = i of
``TP(x[edge_src[e]], edge_attr[e], edge_weight[e])``. On the CPU it is one pass of
``torch.ops.equiforce.tp_convolution`` (couplings measured on NequIP's own e3nn ``TensorProduct`` and checked
against it, see :mod:`equiforce.nn._fused_convolution`); CUDA inputs use the e3nn module it keeps. First
derivatives only: what energies and forces need.
"""
from torch import Tensor, nn
import torch

from .. import ops as _native_ops  # noqa: F401  (registers torch.ops.equiforce.*)
from ..nn._fused_convolution import convolution_tables


class FusedTensorProductScatter(nn.Module):
    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        self.tp = original.tp
        paths, couplings, coefficients = convolution_tables(original.tp)  # raises NotFusable if it does not fit
        self.paths = paths
        self.couplings = couplings
        self.coefficients = coefficients

    def forward(self, x: Tensor, edge_attr: Tensor, edge_weight: Tensor, edge_dst: Tensor, edge_src: Tensor) -> Tensor:
        if x.is_cuda:
            messages = self.tp(x.index_select(0, edge_src), edge_attr, edge_weight)  # [E, mid.dim]
            return torch.zeros((x.shape[0], messages.shape[1]), dtype=messages.dtype,
                               device=messages.device).index_add(0, edge_dst, messages)
        return torch.ops.equiforce.tp_convolution(x, edge_attr, edge_weight, edge_dst, edge_src, self.paths,
                                                  self.couplings, self.coefficients, x.shape[0])  # [N, mid.dim]
