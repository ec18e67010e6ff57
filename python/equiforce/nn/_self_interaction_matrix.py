"""The species-dependent self-interaction as one matrix product, for inference.

Each interaction block mixes an atom's own features with weights that depend on its species: e3nn's
``FullyConnectedTensorProduct(features, one-hot species)``. e3nn evaluates it by building a weight matrix for
every atom (a [N, S] x [S, U W] product) and applying them one atom at a time (``bmm`` of [N, U, W] and
[N, U, 2l+1] per l), a fifth to a quarter of a CPU step of the shipped water model, forward and backward.

For a fixed species the product is a linear map of the features, so it is one matrix ``M_s`` [D_in, D_out]
per species (zero between different l, by equivariance). :func:`set_self_interaction_matrix` measures those
matrices on the block's own tensor product, one unit input at a time, in float64, and the block then computes

    self_part = sum_s onehot[n, s] * (x @ [M_0 | M_1 | ...])[n, s, :]

one dense product of [N, D_in] and [D_in, S D_out] and a weighted sum over species. For one 128-wide block of the
shipped model, eager forward + backward on one CPU thread of a loaded machine: 8.4 -> 1.7 ms at 384 atoms and 35 ->
8.3 ms at 1536 (whole-file gains: ``benchmarks/studies/self_interaction_matrix.py``). The coefficients are not
re-derived: the matrices are e3nn's map itself, and are checked against the block's module on random inputs before
use. The values agree with e3nn to rounding (a sum in another order). Unlike the fused convolution and the radial
tables this is plain torch, so it runs on CUDA too and can be differentiated twice; but the matrices are copies of the
weights, so a block in training mode refuses them (the weights would get no gradient). ``export_model`` uses them by
default.
"""
from typing import List

import torch
from e3nn import o3

from ._interaction import Interaction
from ._radial_table import counterpart_of

#: Largest deviation from e3nn accepted when the matrices are checked, relative to the largest output, per dtype.
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


def measure_matrix(block: Interaction) -> torch.Tensor:
    """[D_in, S * D_out] float64: column block s is the self-interaction map of species s, measured by
    feeding a float64 copy of the block's tensor product one unit feature vector at a time."""
    module = block.self_interaction
    copy = o3.FullyConnectedTensorProduct(module.irreps_in1, module.irreps_in2, module.irreps_out).double()
    with torch.no_grad():
        copy.weight.copy_(module.weight.detach().double())
        inputs, species = module.irreps_in1.dim, module.irreps_in2.dim
        unit = torch.eye(inputs, dtype=torch.float64)  # [D_in, D_in]
        columns: List[torch.Tensor] = []
        for s in range(species):
            onehot = torch.zeros(inputs, species, dtype=torch.float64)
            onehot[:, s] = 1.0
            columns.append(copy(unit, onehot))  # [D_in, D_out]: row k is the image of unit vector k
    return torch.cat(columns, dim=1)


def matrix_error(block: Interaction, matrix: torch.Tensor, samples: int = 64, seed: int = 0) -> float:
    """Largest |matrix form - e3nn| over random features and random species, both in the block's dtype,
    divided by the largest |e3nn output|."""
    module = block.self_interaction
    reference = module.weight
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(samples, module.irreps_in1.dim, generator=generator, dtype=torch.float64)
    species = torch.randint(module.irreps_in2.dim, (samples,), generator=generator)
    onehot = torch.nn.functional.one_hot(species, module.irreps_in2.dim)
    features = features.to(dtype=reference.dtype, device=reference.device)
    onehot = onehot.to(dtype=reference.dtype, device=reference.device)
    with torch.no_grad():
        expected = module(features, onehot)
        measured = block.matrix_self_interaction_of(features, onehot, matrix.to(reference.dtype))
    return float((measured - expected).abs().max()) / max(float(expected.abs().max()), 1e-300)


def set_self_interaction_matrix(model: torch.nn.Module, enabled: bool = True) -> float:
    """Switch every interaction block of ``model`` to the matrix form of its self-interaction (``enabled``)
    or back to e3nn's module. Returns the largest relative deviation from e3nn measured (0.0 when off).

    Call it after the weights are final: the matrices are copies and do not follow later changes to the
    weights. They are stored in each block's dtype and device. Raises ValueError if a block's matrices differ
    from its module by more than :data:`TOLERANCE` (or the model has no interaction blocks).
    """
    blocks = [module for module in model.modules() if isinstance(module, Interaction)]
    if not blocks:
        raise ValueError("set_self_interaction_matrix: the model has no interaction blocks")
    worst = 0.0
    for index, block in enumerate(blocks):
        if not enabled:
            block.self_interaction_matrix = torch.zeros_like(block.self_interaction_matrix[:0, :0])
            block.matrix_self_interaction = False
            continue
        reference = block.self_interaction.weight
        matrix = measure_matrix(block).to(dtype=reference.dtype, device=reference.device)
        error, accepted = matrix_error(block, matrix), TOLERANCE.get(reference.dtype, 1e-5)
        if error > accepted:
            raise ValueError(
                f"set_self_interaction_matrix: block {index}'s measured matrices differ from its e3nn module by "
                f"{error:.2g} (relative; accepted {accepted:g}): the module is not the "
                "fully connected product this expects")
        worst = max(worst, error)
        block.self_interaction_matrix = matrix
        block.matrix_self_interaction = True
    return worst


def copy_self_interaction_matrices(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Give ``target``'s blocks the self-interaction matrices of ``source``, the same architecture (an
    exported TorchScript module, say, whose matrices are not in checkpoints), switched on or off as there."""
    state = source.state_dict()
    for name, module in target.named_modules():
        if not isinstance(module, Interaction):
            continue
        counterpart = counterpart_of(source, name)
        if not hasattr(counterpart, "matrix_self_interaction"):  # a file written before the matrices
            continue
        module.matrix_self_interaction = bool(counterpart.matrix_self_interaction)
        matrix = state[f"{name}.self_interaction_matrix"]
        module.self_interaction_matrix = matrix.to(dtype=module.self_interaction_matrix.dtype,
                                                   device=module.self_interaction_matrix.device)
