"""The TorchScript module OpenMM calls: nm and kJ/mol outside, Å and eV inside."""
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .. import ops as _native_ops  # noqa: F401  (registers torch.ops.equiforce.*)
from ..export import model_dtype
from ..units import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV


def wrap_into_box(positions: Tensor, box: Tensor) -> Tensor:
    """positions [n, 3] moved by whole box vectors (rows a, b, c of OpenMM's reduced, lower-triangular form) into
    the brick 0 <= z < c_z, 0 <= y < b_y, 0 <= x < a_x, as OpenMM wraps, in their own dtype. Differentiable: the
    shifts are piecewise constant, so the gradient is the identity."""
    positions = positions - torch.floor(positions[:, 2:3] / box[2, 2]) * box[2]
    positions = positions - torch.floor(positions[:, 1:2] / box[1, 1]) * box[1]
    return positions - torch.floor(positions[:, 0:1] / box[0, 0]) * box[0]


def closest_pair(positions: Tensor, within: float, box: Optional[Tensor]) -> Optional[Tuple[int, int, float]]:
    """(i, j, distance) of the closest pair of ``positions`` [n, 3] closer than ``within`` (periodic images
    included when ``box`` [3, 3] is given; same length unit throughout), or None: one pass of the native O(N)
    neighbour list."""
    pairs, vectors, _ = torch.ops.equiforce.neighbor_list(positions.detach(), within, box, False)
    if pairs.shape[1] == 0:
        return None
    lengths = torch.linalg.norm(vectors, dim=1)  # [E]
    k = int(torch.argmin(lengths))
    return int(pairs[0, k]), int(pairs[1, k]), float(lengths[k])


class OpenMMEnergy(nn.Module):
    """Wraps an exported potential for ``openmmtorch.TorchForce``.

    forward(positions [n_particles, 3] nm, box [3, 3] nm rows or None) -> energy in kJ/mol (0-dim).
    Only the atoms in ``atoms`` (all when None) are passed to the model, with their species indices.
    With ``max_pairs > 0`` the model runs with a fixed-capacity neighbour list (static shapes, no host
    synchronisation: what a CUDA graph needs); an overflowing list makes the energy NaN.
    """

    def __init__(self, model: torch.jit.ScriptModule, species: Tensor, atoms: Optional[Tensor], periodic: bool,
                 max_pairs: int = 0, wrap: bool = True):
        super().__init__()
        self.model = model
        # Empty, in the model's dtype: what positions are cast to (follows .to(dtype) of this module).
        self.register_buffer("dtype_probe", torch.zeros(0, dtype=model_dtype(model)))
        self.register_buffer("species", species.to(torch.long))  # [n_ml]
        self.use_subset = atoms is not None
        subset = atoms if atoms is not None else torch.zeros(0, dtype=torch.long)
        self.register_buffer("atoms", subset.to(torch.long))  # [n_ml] or [0]
        self.periodic = periodic
        #: Wrap positions into the box in OpenMM's precision before casting them to the model's (see forward).
        self.wrap = bool(wrap)
        self.max_pairs = int(max_pairs)
        self.length_scale = float(ANGSTROM_PER_NM)
        self.energy_scale = float(KJ_PER_MOL_PER_EV)

    def forward(self, positions: Tensor, box: Optional[Tensor] = None) -> Tensor:
        dtype = self.dtype_probe.dtype
        if self.use_subset:
            positions = positions.index_select(0, self.atoms)
        if self.wrap and self.periodic and box is not None:
            # Unwrapped coordinates grow without bound in long runs (atoms diffuse many box lengths). Cast to
            # float32 first, a coordinate of 1 µm keeps a resolution of only ~0.1 pm and the energy moves; wrapped
            # here in the input's precision (float64 from OpenMM's CPU and Reference platforms), every periodic
            # image of a configuration reaches the model as the same numbers to float64 rounding.
            positions = wrap_into_box(positions, box)
        positions_angstrom = positions.to(dtype) * self.length_scale  # [n_ml, 3] Å
        cell: Optional[Tensor] = None
        if self.periodic and box is not None:
            cell = box.to(dtype) * self.length_scale  # [3, 3] Å
        if not positions.is_cuda:  # a host check costs nothing on the CPU; on a GPU it would stall every step
            finite = torch.isfinite(positions).all(dim=1)  # [n_ml]
            if not bool(finite.all()):
                bad = int(torch.nonzero(torch.logical_not(finite))[0, 0])
                raise RuntimeError("equiforce: the position of atom " + str(self.system_index(bad)) +
                                   " is not finite")
        if self.max_pairs > 0:
            energy = self.model(positions_angstrom, self.species, cell, self.max_pairs)  # eV
        else:
            energy = self.model(positions_angstrom, self.species, cell)  # eV
        if not energy.is_cuda and not bool(torch.isfinite(energy)):
            raise RuntimeError(self.nonfinite_energy_message(positions_angstrom, cell, float(energy)))
        return energy * self.energy_scale

    def system_index(self, index: int) -> int:
        """The System's index of the model's atom ``index``."""
        if self.use_subset:
            return int(self.atoms[index])
        return index

    def nonfinite_energy_message(self, positions: Tensor, cell: Optional[Tensor], energy: float) -> str:
        """Why the model's energy is not finite, naming the closest pair of atoms (System indices)."""
        if self.max_pairs > 0:
            within, _, _ = torch.ops.equiforce.neighbor_list(positions.detach(), float(self.model.cutoff), cell, False)
            if within.shape[1] > self.max_pairs:
                return ("equiforce: the fixed-capacity neighbour list overflowed: " + str(within.shape[1]) +
                        " pairs lie within the cutoff but max_pairs is " + str(self.max_pairs) +
                        "; create the force again with a larger max_pairs")
        message = "equiforce: the model's energy is " + str(energy) + " eV"
        pair = closest_pair(positions, 1.0, cell)  # within 1 Å
        if pair is not None:
            i, j, distance = pair
            message += ("; atoms " + str(self.system_index(i)) + " and " + str(self.system_index(j)) + " are " +
                        str(distance) + " Å apart (overlapping atoms lie outside every model's data)")
        return message
