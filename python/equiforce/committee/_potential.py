"""The TorchScript module inside a committee file: K member networks on one shared neighbour list.

A committee file keeps the contract of every equiforce model file, so ``create_force``, ``MLPotential``,
``equiforce info``, ``equiforce bench speed --model`` and the ASE calculator run it unchanged::

    forward(positions [N, 3] Å, species [N] long, cell [3, 3] Å rows or None, max_pairs: int = 0) -> energy eV
    cutoff: float (Å)          atomic_numbers: LongTensor [S]  (species k is element atomic_numbers[k])

``forward`` is the members' mean energy, so its forces are the mean of the members' forces. Two more methods
give the members one by one: ``member_energies`` ([K] eV) and ``member_forces`` ([K] eV, [K, N, 3] eV/Å).
"""
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..ops import padded_neighbor_list  # (importing ops registers torch.ops.equiforce.*)


class CommitteePotential(nn.Module):
    """Members' atomic-energy networks (:class:`equiforce.nn.AtomicEnergies`) sharing one neighbour list.

    Parameters
    ----------
    networks : the members' ``EquivariantPotential.network`` modules, already in the file's dtype and with
        their export optimisations set; all of one cutoff and one element list.
    cutoff : Å, the members' common cutoff radius.
    atomic_numbers : [S] the members' common elements, in species-index order.
    """

    def __init__(self, networks: List[nn.Module], cutoff: float, atomic_numbers: Tensor) -> None:
        super().__init__()
        if len(networks) < 1:
            raise ValueError("a committee needs at least one member")
        self.members = nn.ModuleList(networks)
        self.num_members = len(networks)
        self.cutoff = float(cutoff)
        self.register_buffer("atomic_numbers", atomic_numbers.to(torch.long))  # [S]

    def _edges(self, positions: Tensor, cell: Optional[Tensor], max_pairs: int) -> Tuple[Tensor, Tensor, Tensor]:
        """(edge_index [2, E], vectors [E, 3] Å, overflow: bool 0-dim) once for every member.

        ``max_pairs > 0``: the fixed-capacity list, its padding edges placed beyond the cutoff (contributing
        exactly nothing, as in ``EquivariantPotential.forward``)."""
        if max_pairs > 0:
            return padded_neighbor_list(positions, self.cutoff, max_pairs, cell, 2.0 * self.cutoff)
        edge_index, vectors, _ = torch.ops.equiforce.neighbor_list(positions, self.cutoff, cell, False)
        return edge_index, vectors, torch.zeros((), dtype=torch.bool, device=positions.device)

    @torch.jit.export
    def member_energies(self, positions: Tensor, species: Tensor, cell: Optional[Tensor] = None,
                        max_pairs: int = 0) -> Tensor:
        """[K] energies (eV) of the members for one structure: positions [N, 3] Å, species [N], cell [3, 3] Å
        rows or None. An overflowing fixed-capacity list (``max_pairs > 0``) makes them NaN."""
        edge_index, vectors, overflow = self._edges(positions, cell, max_pairs)
        energies: List[Tensor] = []
        for member in self.members:
            energies.append(member(positions, species, edge_index, vectors).sum())
        stacked = torch.stack(energies)  # [K] eV
        return torch.where(overflow, torch.full_like(stacked, float("nan")), stacked)

    @torch.jit.export
    def member_forces(self, positions: Tensor, species: Tensor,
                      cell: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Members' energies [K] (eV) and forces [K, N, 3] (eV/Å, each -∇E_k) for one structure.

        The neighbour list is built once; each member's gradient is one backward pass through its own network.
        ``positions`` are detached: the result carries no graph. Needs gradients enabled (not under ``torch.no_grad``)."""
        if not torch.is_grad_enabled():
            raise RuntimeError("member_forces needs gradients: call it outside torch.no_grad()")
        x = positions.detach().requires_grad_(True)  # [N, 3] Å
        edge_index, vectors, _ = self._edges(x, cell, 0)
        energies: List[Tensor] = []
        forces: List[Tensor] = []
        for member in self.members:
            energy = member(x, species, edge_index, vectors).sum()  # eV
            gradient: Optional[Tensor] = None
            if energy.requires_grad:  # False only when no pair lies within the cutoff
                gradient = torch.autograd.grad([energy], [x], retain_graph=True, allow_unused=True)[0]
            if gradient is None:  # no atom within the cutoff of another: the energy does not move
                gradient = torch.zeros_like(x)
            energies.append(energy.detach())
            forces.append(-gradient)
        return torch.stack(energies), torch.stack(forces)  # [K] eV, [K, N, 3] eV/Å

    def forward(self, positions: Tensor, species: Tensor, cell: Optional[Tensor] = None, max_pairs: int = 0) -> Tensor:
        """The members' mean energy (eV, 0-dim) of one structure: positions [N, 3] Å, species [N], cell [3, 3] Å
        rows or None; forces by autograd are the members' mean forces."""
        return self.member_energies(positions, species, cell, max_pairs).mean()
