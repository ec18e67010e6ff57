"""Structures as graphs: species indices and a neighbour list computed once per frame and kept."""
from dataclasses import dataclass, fields
from typing import List, Optional, Sequence

import torch
from torch import Tensor

from ..neighbors import neighbor_list
from ._structure import DataError, Structure


@dataclass
class Graph:
    """One frame, ready for the model (Å, eV, eV/Å).

    Attributes
    ----------
    positions : Tensor [N, 3]
        Coordinates in Å.
    species : LongTensor [N]
        Index of each atom's element in the model's ``elements``.
    edge_index : LongTensor [2, E]
        (centre i, neighbour j) pairs within the cutoff, from :func:`equiforce.neighbors.neighbor_list`.
    edge_offsets : Tensor [E, 3]
        Periodic image offset of each edge in Å (``shifts @ cell``; zeros for an open frame), constant.
    energy : Tensor [] or None
        Total energy in eV.
    forces : Tensor [N, 3] or None
        Forces in eV/Å.
    cell : Tensor [3, 3] or None
        Lattice vectors as rows in Å (``None`` for an open frame); kept for reference, the edges already
        carry the periodic images.
    dipole : Tensor [3] or None
        Molecular dipole label in e·Å (open frames only).
    polarizability : Tensor [3, 3] or None
        Polarizability label in Å³.
    """

    positions: Tensor
    species: Tensor
    edge_index: Tensor
    edge_offsets: Tensor
    energy: Optional[Tensor]
    forces: Optional[Tensor]
    cell: Optional[Tensor]
    dipole: Optional[Tensor] = None
    polarizability: Optional[Tensor] = None

    @property
    def num_atoms(self) -> int:
        return int(self.positions.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "Graph":
        """Copy with floating-point tensors in ``dtype`` and every tensor on ``device``."""
        moved = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None:
                value = value.to(device=device, dtype=dtype if value.is_floating_point() else None)
            moved[field.name] = value
        return Graph(**moved)


def species_indices(structure: Structure, elements: Sequence[str]) -> Tensor:
    """LongTensor [N] of indices into ``elements``; unknown elements raise :class:`DataError` naming them."""
    lookup = {symbol: k for k, symbol in enumerate(elements)}
    unknown = sorted(set(structure.symbols) - set(lookup))
    if unknown:
        raise DataError(f"{structure.source}: element(s) {unknown} not in the model's elements {list(elements)}")
    return torch.tensor([lookup[symbol] for symbol in structure.symbols], dtype=torch.long)


def structure_to_graph(structure: Structure, elements: Sequence[str], cutoff: float) -> Graph:
    """Build the :class:`Graph` of one structure with a neighbour list for ``cutoff`` (Å), in float64."""
    species = species_indices(structure, elements)
    edge_index, shifts = neighbor_list(structure.positions, cutoff, structure.cell)  # [2, E], [E, 3]
    if structure.cell is None:
        edge_offsets = torch.zeros_like(shifts)  # [E, 3]
    else:
        edge_offsets = shifts @ structure.cell  # [E, 3] Å
    energy = None if structure.energy is None else torch.tensor(structure.energy, dtype=torch.float64)
    return Graph(
        positions=structure.positions.clone(),
        species=species,
        edge_index=edge_index,
        edge_offsets=edge_offsets,
        energy=energy,
        forces=None if structure.forces is None else structure.forces.clone(),
        cell=None if structure.cell is None else structure.cell.clone(),
        dipole=None if structure.dipole is None else structure.dipole.clone(),
        polarizability=None if structure.polarizability is None else structure.polarizability.clone(),
    )


class GraphDataset:
    """A list of :class:`Graph` built once from structures (the neighbour lists are computed here and cached).

    Parameters
    ----------
    structures
        Labelled frames (periodic and open frames may be mixed; sizes may differ).
    elements
        Chemical symbols of the model, in the order of its species indices.
    cutoff
        Neighbour-list cutoff in Å (the model's cutoff).
    """

    def __init__(self, structures: Sequence[Structure], elements: Sequence[str], cutoff: float) -> None:
        self.elements: List[str] = list(elements)
        self.cutoff = float(cutoff)
        self.sources: List[str] = [s.source for s in structures]
        self.graphs: List[Graph] = [structure_to_graph(s, self.elements, self.cutoff) for s in structures]

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> Graph:
        return self.graphs[index]

    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "GraphDataset":
        """Move every graph to ``device`` / cast floating tensors to ``dtype`` in place; returns ``self``."""
        self.graphs = [graph.to(device, dtype) for graph in self.graphs]
        return self

    def subset(self, indices: Sequence[int]) -> List[Graph]:
        """The graphs at ``indices``, in that order."""
        return [self.graphs[i] for i in indices]

    def require_labels(self, indices: Sequence[int], energy: bool, forces: bool) -> None:
        """Raise :class:`DataError` naming the first frame among ``indices`` without a needed label."""
        for i in indices:
            graph = self.graphs[i]
            if energy and graph.energy is None:
                raise DataError(f"{self.sources[i]}: frame has no energy, which training needs")
            if forces and graph.forces is None:
                raise DataError(f"{self.sources[i]}: frame has no forces, which training needs")
