"""Radial MLPs tabulated as functions of the edge length, for inference.

Each interaction block turns an edge length r into per-edge tensor-product weights through
``MLP(basis(r))``: a smooth function R -> R^W of one variable, evaluated with three matrix products per edge
and per block (a third of a CPU step). :func:`set_radial_table` samples that function and its derivative at
K evenly spaced knots on [0, cutoff], in float64, and the blocks then interpolate it with cubic Hermite
polynomials (``torch.ops.equiforce.radial_spline``, ``plugin/radial_spline.cpp``): one pass over [E, W]
forward and one backward.

The interpolant has continuous values and first derivatives, and the forces are its exact gradient, so the
tabulated model is itself a conservative potential; it differs from the MLP by the interpolation error,
O(spacing^4), which :func:`set_radial_table` measures and returns (4e-9 of the largest weight for the shipped
model with the default 1025 knots over 4 Å, below float32 rounding; 2.5e-10 with 2049, 6e-8 with 513). From
the cutoff on the table gives exactly zero, as the MLP does (its input, the enveloped basis, vanishes there with its derivative, and the MLP has no biases).

Tables are for inference: the MLP's weights get no gradient through them, so a block in training mode
refuses its table, and the op has no second derivatives. ``export_model`` tabulates by default.
"""
from typing import Callable, Optional

import torch

from ._interaction import Interaction
from ._model import AtomicEnergies

#: Knots per table by default: 4 Å / 1024 ≈ 0.004 Å apart for the shipped model's cutoff. More buy nothing in
#: a float32 file, whose stored values carry a relative rounding of 3e-8 anyway; each knot costs 8 W bytes.
DEFAULT_KNOTS = 1025
#: Largest interpolation error accepted, relative to the largest tabulated value; more knots are needed above.
MAX_RELATIVE_ERROR = 1e-6


def _radial_function(block: Interaction, embedding: torch.nn.Module):
    """r [M] Å (float64) -> [M, W]: the block's radial MLP on the embedding, evaluated in float64 with copies
    of their weights (the modules themselves are left in their dtype)."""
    mlp_state = {name: value.detach().double() for name, value in block.radial.state_dict().items()}
    embedding_state = {name: value.detach().double() for name, value in embedding.state_dict().items()}

    def function(lengths: torch.Tensor) -> torch.Tensor:
        basis = torch.func.functional_call(embedding, embedding_state, (lengths,))  # [M, num_basis]
        return torch.func.functional_call(block.radial, mlp_state, (basis,))  # [M, W]

    return function


def knot_spacing(cutoff: float, knots: int) -> float:
    """Å between the knots of a table of ``knots`` knots on [0, cutoff] (Å)."""
    return cutoff / (knots - 1)


def tabulate(block: Interaction, embedding: torch.nn.Module, cutoff: float, knots: int,
             function: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """[knots, 2, W] float64: the values and d/dr (per Å) of ``block``'s radial MLP at r_k = k cutoff / (knots - 1).

    Derivatives by forward-mode autodiff (each knot's values depend on its own radius only, so one
    Jacobian-vector product with a tangent of ones gives them all). The first knot, r = 0, is where the Bessel
    basis sin(a r) / r is 0/0: its value is taken at r = 1e-6 Å (the limit to a relative 1e-11) and its
    derivative is 0, exactly (sin(a r) / r is even in r and the envelope starts at order r^p, p >= 2); computed
    there, it would be lost to cancellation. ``function``: the block's float64 radial function, if already built.
    """
    if knots < 3:
        raise ValueError(f"a radial table needs at least 3 knots, got {knots}")
    function = function or _radial_function(block, embedding)
    radii = torch.linspace(0.0, cutoff, knots, dtype=torch.float64)
    radii[0] = 1e-6
    with torch.no_grad():
        values, slopes = torch.func.jvp(function, (radii,), (torch.ones_like(radii),))  # [K, W] each
    table = torch.stack([values, slopes], dim=1)  # [K, 2, W]
    table[0, 1] = 0.0
    table[-1] = 0.0  # the cutoff: the MLP is zero there with zero slope (to rounding)
    return table


def table_error(block: Interaction, embedding: torch.nn.Module, table: torch.Tensor, cutoff: float,
                function: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> float:
    """Largest |interpolated - MLP| over midpoints and quarter points of every interval, in float64,
    divided by the largest |value| in the table. ``function`` as in :func:`tabulate`."""
    knots = table.shape[0]
    spacing = knot_spacing(cutoff, knots)
    offsets = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    radii = ((torch.arange(knots - 1, dtype=torch.float64).unsqueeze(1) + offsets) * spacing).reshape(-1)
    with torch.no_grad():
        expected = (function or _radial_function(block, embedding))(radii)
        interpolated = torch.ops.equiforce.radial_spline(radii, table, spacing)
    scale = float(table[:, 0].abs().max())
    return float((interpolated - expected).abs().max()) / max(scale, 1e-300)


def set_radial_table(model: torch.nn.Module, knots: Optional[int] = DEFAULT_KNOTS) -> float:
    """Tabulate the radial MLPs of every interaction block of ``model`` (``knots``), or switch the tables off
    (``None``: the blocks run their MLPs again). Returns the largest relative interpolation error measured
    (0.0 when switching off).

    Call it after the weights are final (training, loading): the tables are copies of the MLPs and do not
    follow later changes to them. Tables are stored in each block's dtype. Raises ValueError when the error
    exceeds :data:`MAX_RELATIVE_ERROR` (more knots are needed) or the model has no interaction blocks.
    """
    networks = [module for module in model.modules() if isinstance(module, AtomicEnergies)]
    if not networks:
        raise ValueError("set_radial_table: the model has no interaction blocks (no AtomicEnergies module)")
    worst = 0.0
    for network in networks:
        cutoff = float(network.radial.cutoff)
        for index, block in enumerate(network.layers):
            if knots is None:
                block.radial_table = torch.zeros_like(block.radial_table[:0])
                block.tabulated_radial = False
                continue
            function = _radial_function(block, network.radial)  # float64 copy of the block's radial MLP
            table = tabulate(block, network.radial, cutoff, int(knots), function)
            error = table_error(block, network.radial, table, cutoff, function)
            if error > MAX_RELATIVE_ERROR:
                raise ValueError(
                    f"set_radial_table: block {index}'s radial MLP is interpolated with a relative error of "
                    f"{error:.2g} with {knots} knots (accepted: {MAX_RELATIVE_ERROR:g}); use more knots"
                )
            worst = max(worst, error)
            reference = next(block.radial.parameters())
            block.radial_table = table.to(dtype=reference.dtype, device=reference.device)
            block.radial_table_spacing = knot_spacing(cutoff, int(knots))
            block.tabulated_radial = True
        network.tabulated_radial = knots is not None
    return worst


def counterpart_of(source: torch.nn.Module, name: str) -> torch.nn.Module:
    """The submodule called ``name`` ("network.layers.0") in ``source``, also for TorchScript modules
    (which do not support ``get_submodule``)."""
    module = source
    for part in name.split("."):
        module = getattr(module, part)
    return module


def copy_radial_tables(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Give ``target``'s blocks the radial tables of ``source``, the same architecture (an exported
    TorchScript module, say, whose tables are not in checkpoints), switched on or off as there."""
    state = source.state_dict()
    for name, module in target.named_modules():
        if not isinstance(module, (Interaction, AtomicEnergies)):
            continue
        counterpart = counterpart_of(source, name)
        module.tabulated_radial = bool(counterpart.tabulated_radial)
        if isinstance(module, Interaction):
            table = state[f"{name}.radial_table"]
            module.radial_table = table.to(dtype=module.radial_table.dtype, device=module.radial_table.device)
            module.radial_table_spacing = float(counterpart.radial_table_spacing)
