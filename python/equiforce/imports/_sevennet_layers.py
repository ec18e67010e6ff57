"""Stand-ins for two SevenNet modules, each reading and writing the same data keys with the same values.

* :class:`OneHotInModelDtype` for ``OnehotEmbedding``, which makes float32 one-hot vectors whatever the weights.
* :class:`FusedSevenNetConvolution` for ``IrrepsConvolution``: gather, tensor product and scatter in one pass of
  equiforce's native op ``torch.ops.equiforce.tp_convolution`` on the CPU (the op equiforce's own exported models
  use; its couplings are measured on SevenNet's own e3nn ``TensorProduct`` and checked against it), e3nn's code on
  CUDA. First derivatives only: what energies and forces need.
"""
from typing import Dict, Optional

import torch
from torch import Tensor, nn

from .. import ops as _native_ops  # noqa: F401  (registers torch.ops.equiforce.*)
from ..nn._fused_convolution import convolution_tables
from ._errors import ImportedModelError


class OneHotInModelDtype(nn.Module):
    """One-hot type vectors in the dtype of the weights (``dtype_probe`` follows ``.to(dtype)``), so the network
    also runs in float64. Same keys as SevenNet's ``OnehotEmbedding``."""

    def __init__(self, num_classes: int, key_x: str, key_output: str, key_save: Optional[str],
                 key_additional_output: Optional[str]) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.key_x = key_x
        self.key_output = key_output
        self.key_save = key_save
        self.key_additional_output = key_additional_output
        self.register_buffer("dtype_probe", torch.zeros(0))

    def forward(self, data: Dict[str, Tensor]) -> Dict[str, Tensor]:
        types = data[self.key_x]  # [N] type indices
        onehot = torch.nn.functional.one_hot(types, self.num_classes).to(self.dtype_probe.dtype)  # [N, T]
        data[self.key_output] = onehot
        if self.key_additional_output is not None:
            data[self.key_additional_output] = onehot
        if self.key_save is not None:
            data[self.key_save] = types
        return data


class FusedSevenNetConvolution(nn.Module):
    """SevenNet's convolution: weights = weight_nn(radial embedding) [E, W]; for every atom i,
    x'[i] = Σ_{e: edge_index[0, e] = i} TP(x[edge_index[1, e]], Y(edge e), weights[e]) / denominator."""

    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        if getattr(original, "is_parallel", False):
            raise ImportedModelError("SevenNet's parallel (LAMMPS ghost-atom) convolution is not supported")
        self.weight_nn = original.weight_nn
        self.convolution = original.convolution  # e3nn's TensorProduct: CUDA inputs use it
        self.denominator = original.denominator
        self.key_x = original.key_x
        self.key_filter = original.key_filter
        self.key_weight_input = original.key_weight_input
        self.key_edge_idx = original.key_edge_idx
        paths, couplings, coefficients = convolution_tables(original.convolution)  # checked against e3nn
        self.paths = paths
        self.couplings = couplings
        self.coefficients = coefficients

    def forward(self, data: Dict[str, Tensor]) -> Dict[str, Tensor]:
        weight = self.weight_nn(data[self.key_weight_input])  # [E, W]
        x = data[self.key_x]  # [N, irreps_x.dim]
        edge_sh = data[self.key_filter]  # [E, irreps_filter.dim]
        centre = data[self.key_edge_idx][0]  # [E]
        neighbour = data[self.key_edge_idx][1]  # [E]
        if x.is_cuda:
            message = self.convolution(x.index_select(0, neighbour), edge_sh, weight)  # [E, out.dim]
            summed = torch.zeros((x.shape[0], message.shape[1]), dtype=x.dtype, device=x.device).index_add(
                0, centre, message)
        else:
            summed = torch.ops.equiforce.tp_convolution(x, edge_sh, weight, centre, neighbour, self.paths,
                                                        self.couplings, self.coefficients, x.shape[0])
        data[self.key_x] = summed.div(self.denominator)  # [N, out.dim]
        return data


def fuse_convolutions(model: nn.Module) -> int:
    """Replace every ``*_convolution`` module of SevenNet's ``model`` in place; returns how many."""
    names = [name for name, module in model._modules.items() if name.endswith("_convolution")]
    for name in names:
        model.replace_module(name, FusedSevenNetConvolution(model._modules[name]))
    return len(names)
