"""A short-range repulsive wall below the shortest distances of the training data.

A network trained on liquid water has never seen two hydrogens of one molecule 1 Å apart, and nothing stops it
from predicting an energy that falls there (a "hole" MD can fall into). The wall adds, for each pair of atoms
closer than the onset radius r_on of their element pair,

    E(r) = A · (r_on / r − 1)³        (eV; A = ``repulsion_strength``)

which is zero with zero first and second derivatives at r_on (smooth) and diverges as r → 0. With r_on set
just below the shortest distance of each element pair in the training data (see
:func:`repulsion_radii_from_structures`), the wall is exactly zero on every training frame: it changes nothing
the network learned and acts only where the network has no data.
"""
from typing import Dict, List, Sequence

import torch
from torch import Tensor, nn


def pair_key(a: str, b: str) -> str:
    """Canonical name of an element pair, e.g. ``"H-O"`` (symbols sorted alphabetically)."""
    return "-".join(sorted((a, b)))


def repulsion_radii_from_structures(structures, margin: float = 0.03) -> Dict[str, float]:
    """Onset radii (Å) = shortest distance of each element pair over ``structures`` minus ``margin`` (Å).

    ``structures``: :class:`equiforce.data.Structure` frames (minimum image in periodic cells with edges longer
    than twice the distances found, which holds for liquid boxes).
    """
    import numpy as np

    shortest: Dict[str, float] = {}
    for structure in structures:
        positions = structure.positions.double().numpy()  # [N, 3] Å
        delta = positions[None, :, :] - positions[:, None, :]  # [N, N, 3]
        if structure.cell is not None:
            cell = structure.cell.double().numpy()
            fractional = delta @ np.linalg.inv(cell)
            delta = (fractional - np.round(fractional)) @ cell
        distance = np.linalg.norm(delta, axis=-1) + np.diag(np.full(len(positions), np.inf))
        symbols = np.array(structure.symbols)
        for a in sorted(set(structure.symbols)):
            for b in sorted(set(structure.symbols)):
                if a > b:
                    continue
                block = distance[np.ix_(symbols == a, symbols == b)]
                if block.size and np.isfinite(block.min()):
                    key = pair_key(a, b)
                    shortest[key] = min(shortest.get(key, np.inf), float(block.min()))
    return {key: value - margin for key, value in sorted(shortest.items())}


class PairRepulsion(nn.Module):
    """Per-atom wall energies from the edges of the neighbour list (each ordered pair counts half)."""

    def __init__(self, elements: Sequence[str], radii: Dict[str, float], strength: float) -> None:
        super().__init__()
        num_species = len(elements)
        onset = torch.zeros(num_species, num_species, dtype=torch.float64)  # [S, S] Å; 0 = no wall
        for i, a in enumerate(elements):
            for j, b in enumerate(elements):
                onset[i, j] = float(radii.get(pair_key(a, b), 0.0))
        self.num_species = num_species
        self.strength = float(strength)
        # not persistent: rebuilt from the config, so checkpoints without a wall load unchanged
        self.register_buffer("onset", onset, persistent=False)

    def forward(self, species: Tensor, edge_index: Tensor, lengths: Tensor) -> Tensor:
        """species [N], edge_index [2, E], lengths [E] Å -> [N] wall energy per atom in eV."""
        onset = self.onset.to(lengths.dtype)[species.index_select(0, edge_index[0]), species.index_select(0, edge_index[1])]
        inside = (lengths < onset) & (onset > 0)  # [E]
        safe = torch.where(inside, lengths, onset.clamp(min=1.0))  # avoid 0/0 outside the wall
        excess = torch.where(inside, onset / safe - 1.0, torch.zeros_like(lengths))
        pair_energy = 0.5 * self.strength * excess**3  # [E] eV, half per ordered pair
        return torch.zeros(species.shape[0], dtype=lengths.dtype, device=lengths.device).index_add(
            0, edge_index[0], pair_energy
        )
