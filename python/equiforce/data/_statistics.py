"""Data statistics that set the model's normalisation: per-element energy shifts, force scale, neighbours."""
from typing import List, Sequence

import torch

from ._graph import Graph


def composition_matrix(graphs: Sequence[Graph], num_species: int) -> torch.Tensor:
    """[num_frames, num_species] float64 count of each species in each frame."""
    rows = [torch.bincount(g.species.cpu(), minlength=num_species) for g in graphs]
    return torch.stack(rows).to(torch.float64)


def fit_energy_shifts(graphs: Sequence[Graph], num_species: int) -> List[float]:
    """Per-element energies in eV that best explain the total energies by least squares.

    Solves ``min_e Σ_f (E_f - Σ_s n_fs e_s)²``. Where the compositions do not determine every element (e.g.
    pure water, where n_H = 2 n_O in every frame, or an element absent from ``graphs``) the minimum-norm
    solution is returned; its per-frame sums are still the least-squares fit.
    """
    counts = composition_matrix(graphs, num_species)  # [F, S]
    energies = torch.stack([g.energy.detach().cpu().to(torch.float64) for g in graphs]).unsqueeze(1)  # [F, 1] eV
    solution = torch.linalg.lstsq(counts, energies, driver="gelsd").solution  # [S, 1] eV
    return [float(v) for v in solution.squeeze(1)]


def force_rms(graphs: Sequence[Graph]) -> float:
    """Root mean square of all force components in eV/Å (``sqrt(mean(F_ia²))`` over atoms i and axes a)."""
    squares = sum(float((g.forces.detach().to(torch.float64) ** 2).sum()) for g in graphs)
    components = sum(3 * g.num_atoms for g in graphs)
    return (squares / max(1, components)) ** 0.5


def average_num_neighbors(graphs: Sequence[Graph]) -> float:
    """Mean number of neighbours within the cutoff per atom (edges / atoms)."""
    edges = sum(g.num_edges for g in graphs)
    atoms = sum(g.num_atoms for g in graphs)
    return edges / max(1, atoms)
