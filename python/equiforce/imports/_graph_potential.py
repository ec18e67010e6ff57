"""The runtime shell of an imported model: equiforce's neighbour list around a foreign edge-based network.

An imported file keeps the contract of every equiforce model file, so that ``create_force``, ``MLPotential``,
``equiforce info``, ``equiforce bench speed`` and the ASE calculator run it unchanged::

    forward(positions [N, 3] Å, species [N] long, cell [3, 3] Å rows or None, max_pairs: int = 0) -> energy eV
    cutoff: float (Å)          atomic_numbers: LongTensor [S]  (species k is element atomic_numbers[k])

The network inside is any TorchScript module ``forward(types [N] long, edge_index [2, E] long,
vectors [E, 3] Å) -> energy (eV, 0-dim)``, where ``vectors[k] = r[edge_index[1, k]] - r[edge_index[0, k]]``
(with the periodic image) and every pair closer than the cutoff is listed in both directions.
"""
from typing import Optional

import torch
from torch import Tensor, nn

from ..ops import padded_neighbor_list  # (importing ops registers torch.ops.equiforce.*)


class GraphPotential(nn.Module):
    """Edges from ``torch.ops.equiforce.neighbor_list``, energy from an imported edge-based ``network``.

    Parameters
    ----------
    network : TorchScript module (see the module docstring). An edge of length exactly ``cutoff`` must contribute
        exactly nothing: the padding edges of the fixed-capacity list are placed there. (Polynomial envelopes
        vanish at the cutoff but not beyond it, so the padding is not placed further out.)
    cutoff : Å, the network's own cutoff radius.
    atomic_numbers : [S] the elements this file accepts, in the order of the species indices it is given.
    type_of_species : [S] the network's own type index for each of those elements.
    """

    def __init__(self, network: nn.Module, cutoff: float, atomic_numbers: Tensor, type_of_species: Tensor) -> None:
        super().__init__()
        self.network = network
        self.cutoff = float(cutoff)
        self.register_buffer("atomic_numbers", atomic_numbers.to(torch.long))  # [S]
        self.register_buffer("type_of_species", type_of_species.to(torch.long))  # [S]

    def forward(self, positions: Tensor, species: Tensor, cell: Optional[Tensor] = None, max_pairs: int = 0) -> Tensor:
        """Energy (eV, 0-dim) of one structure: positions [N, 3] Å, species [N], cell [3, 3] Å rows or None.

        ``max_pairs > 0``: fixed-capacity neighbour list (static shapes, for CUDA graphs); an overflowing list
        gives NaN, never a truncated sum.
        """
        types = self.type_of_species.index_select(0, species)  # [N]
        if max_pairs > 0:  # padding at exactly the cutoff (the imported networks' radial functions vanish there)
            edge_index, vectors, overflow = padded_neighbor_list(positions, self.cutoff, max_pairs, cell, self.cutoff)
            energy = self.network(types, edge_index, vectors)
            return torch.where(overflow, torch.full_like(energy, float("nan")), energy)
        edge_index, vectors, _ = torch.ops.equiforce.neighbor_list(positions, self.cutoff, cell, False)
        return self.network(types, edge_index, vectors)  # eV
