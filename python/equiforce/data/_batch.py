"""Batching frames of different sizes into one disconnected graph, and iterating over batches."""
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence

import torch
from torch import Tensor

from ._graph import Graph


@dataclass
class Batch:
    """Several frames concatenated into one graph (the input of ``EquivariantPotential.batch_energy``).

    Attributes
    ----------
    positions : Tensor [N, 3]
        Coordinates of all atoms in Å (frame after frame).
    species : LongTensor [N]
        Species index of each atom.
    edge_index : LongTensor [2, E]
        Edges of every frame, offset by the number of atoms in the frames before it.
    edge_offsets : Tensor [E, 3]
        Periodic image offset of each edge in Å (``shifts @ cell`` of its frame).
    batch : LongTensor [N]
        Frame index (0..num_graphs-1) of each atom.
    num_atoms : LongTensor [num_graphs]
        Atoms per frame.
    num_graphs : int
        Number of frames.
    energy : Tensor [num_graphs] or None
        Reference energies in eV (``None`` when any frame lacks one).
    forces : Tensor [N, 3] or None
        Reference forces in eV/Å (``None`` when any frame lacks them).
    dipole : Tensor [num_graphs, 3] or None
        Reference dipoles in e·Å, NaN for frames without one (``None`` when no frame has one).
    polarizability : Tensor [num_graphs, 3, 3] or None
        Reference polarizabilities in Å³, NaN for frames without one (``None`` when no frame has one).
    """

    positions: Tensor
    species: Tensor
    edge_index: Tensor
    edge_offsets: Tensor
    batch: Tensor
    num_atoms: Tensor
    num_graphs: int
    energy: Optional[Tensor]
    forces: Optional[Tensor]
    dipole: Optional[Tensor] = None
    polarizability: Optional[Tensor] = None


def _stack_labels(graphs: Sequence[Graph], name: str) -> Optional[Tensor]:
    """[B, ...] stack of the frame label ``name``, NaN where a frame has none; None when no frame has one."""
    labelled = [getattr(g, name) for g in graphs if getattr(g, name) is not None]
    if not labelled:
        return None
    missing = torch.full_like(labelled[0], float("nan"))
    return torch.stack([missing if getattr(g, name) is None else getattr(g, name) for g in graphs])


def collate(graphs: Sequence[Graph]) -> Batch:
    """Concatenate ``graphs`` (all on one device and dtype) into a :class:`Batch`."""
    if not graphs:
        raise ValueError("collate needs at least one graph")
    device = graphs[0].positions.device
    counts = torch.tensor([g.num_atoms for g in graphs], dtype=torch.long, device=device)  # [B]
    starts = torch.cumsum(counts, 0) - counts  # [B] index of each frame's first atom
    edge_index = torch.cat([g.edge_index + starts[k] for k, g in enumerate(graphs)], dim=1)  # [2, E]
    batch = torch.repeat_interleave(torch.arange(len(graphs), device=device), counts)  # [N]
    have_energy = all(g.energy is not None for g in graphs)
    have_forces = all(g.forces is not None for g in graphs)
    return Batch(
        positions=torch.cat([g.positions for g in graphs]),  # [N, 3]
        species=torch.cat([g.species for g in graphs]),  # [N]
        edge_index=edge_index,
        edge_offsets=torch.cat([g.edge_offsets for g in graphs]),  # [E, 3]
        batch=batch,
        num_atoms=counts,
        num_graphs=len(graphs),
        energy=torch.stack([g.energy for g in graphs]) if have_energy else None,  # [B]
        forces=torch.cat([g.forces for g in graphs]) if have_forces else None,  # [N, 3]
        dipole=_stack_labels(graphs, "dipole"),  # [B, 3] or None
        polarizability=_stack_labels(graphs, "polarizability"),  # [B, 3, 3] or None
    )


def iterate_batches(
    graphs: Sequence[Graph],
    batch_size: int,
    shuffle: bool = False,
    generator: Optional[torch.Generator] = None,
) -> Iterator[Batch]:
    """Yield :class:`Batch` es of up to ``batch_size`` frames.

    With ``shuffle`` the order is ``torch.randperm`` drawn from ``generator`` (a CPU ``torch.Generator``), so the
    order is reproducible for a seed; the last batch may be smaller.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order: List[int] = list(range(len(graphs)))
    if shuffle:
        order = torch.randperm(len(graphs), generator=generator).tolist()
    for start in range(0, len(order), batch_size):
        yield collate([graphs[i] for i in order[start : start + batch_size]])


def num_batches(num_frames: int, batch_size: int) -> int:
    """Number of batches :func:`iterate_batches` yields for ``num_frames`` frames."""
    return (num_frames + batch_size - 1) // batch_size
