"""Pure-PyTorch neighbour list, TorchScript-compatible: the reference implementation.

Conventions
-----------
* ``edge_index[0] = i`` (the centre atom), ``edge_index[1] = j`` (its neighbour). Every ordered pair within the
  cutoff is listed in both directions.
* ``shifts[k]`` are integer lattice translations (stored in the positions' dtype): the displacement from atom
  ``i`` to the neighbouring image of ``j`` is ``positions[j] - positions[i] + shifts[k] @ cell``
  (see :func:`edge_vectors`), so gradients flow through positions *and* cell.
* ``cell`` rows are the lattice vectors. Any cell works; when it is in OpenMM's reduced (lower-triangular)
  form and every width is at least twice the cutoff, the fast minimum-image path is taken, otherwise every
  periodic image within the cutoff is listed (an atom may then neighbour its own image).

Pairs are found on detached coordinates in row blocks (O(N²) time, O(block·N) memory); the native O(N)
op in :mod:`equiforce.ops` is the fast path for large systems.
"""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

def edge_vectors(positions: Tensor, edge_index: Tensor, shifts: Tensor, cell: Optional[Tensor]) -> Tensor:
    """Displacements ``r_j + shift·cell - r_i``, differentiable in positions and cell.

    positions [N, 3], edge_index [2, E], shifts [E, 3] (lattice units), cell [3, 3] or None -> [E, 3].
    """
    vectors = positions.index_select(0, edge_index[1]) - positions.index_select(0, edge_index[0])
    if cell is not None:
        vectors = vectors + shifts.to(cell.dtype) @ cell
    return vectors


def is_reduced_form(cell: Tensor) -> bool:
    """True when ``cell`` is lower triangular with a positive diagonal (OpenMM's reduced triclinic form)."""
    upper = torch.stack([cell[0, 1], cell[0, 2], cell[1, 2]])
    diagonal = torch.stack([cell[0, 0], cell[1, 1], cell[2, 2]])
    return bool((upper == 0).all()) and bool((diagonal > 0).all())


def cell_widths(cell: Tensor) -> Tensor:
    """Distances between opposite faces of the cell, [3] (same length unit as ``cell``)."""
    volume = torch.abs(torch.linalg.det(cell))
    areas = torch.stack(
        [
            torch.linalg.norm(torch.linalg.cross(cell[1], cell[2])),
            torch.linalg.norm(torch.linalg.cross(cell[2], cell[0])),
            torch.linalg.norm(torch.linalg.cross(cell[0], cell[1])),
        ]
    )
    return volume / areas


def _row_block(n_atoms: int) -> int:
    """Rows per block so that one block examines about 4 M pairs (bounds temporary memory)."""
    block_pairs = 1 << 22
    return max(1, block_pairs // max(1, n_atoms))


def _free_pairs(positions: Tensor, cutoff: float) -> Tuple[Tensor, Tensor]:
    n = positions.shape[0]
    cutoff2 = cutoff * cutoff
    all_j = torch.arange(n, device=positions.device)
    found_i: List[Tensor] = []
    found_j: List[Tensor] = []
    step = _row_block(n)
    for start in range(0, n, step):
        rows = torch.arange(start, min(start + step, n), device=positions.device)
        d = positions.unsqueeze(0) - positions[rows].unsqueeze(1)  # [B, N, 3]
        mask = (d * d).sum(-1) < cutoff2
        mask = mask & (rows.unsqueeze(1) != all_j.unsqueeze(0))
        hits = torch.nonzero(mask)  # [P, 2]
        bi, bj = hits[:, 0], hits[:, 1]
        found_i.append(rows[bi])
        found_j.append(bj)
    edge_index = torch.stack([torch.cat(found_i), torch.cat(found_j)])
    shifts = torch.zeros((edge_index.shape[1], 3), dtype=positions.dtype, device=positions.device)
    return edge_index, shifts


def _minimum_image_pairs(positions: Tensor, cutoff: float, cell: Tensor) -> Tuple[Tensor, Tensor]:
    """Reduced cell with every width >= 2 cutoff: at most one image of j is within the cutoff of i."""
    n = positions.shape[0]
    cutoff2 = cutoff * cutoff
    a, b, c = cell[0], cell[1], cell[2]
    found_i: List[Tensor] = []
    found_j: List[Tensor] = []
    found_s: List[Tensor] = []
    step = _row_block(n)
    for start in range(0, n, step):
        rows = torch.arange(start, min(start + step, n), device=positions.device)
        d = positions.unsqueeze(0) - positions[rows].unsqueeze(1)  # [B, N, 3]
        nc = torch.round(d[..., 2] / c[2])
        d = d - nc.unsqueeze(-1) * c
        nb = torch.round(d[..., 1] / b[1])
        d = d - nb.unsqueeze(-1) * b
        na = torch.round(d[..., 0] / a[0])
        d = d - na.unsqueeze(-1) * a
        mask = (d * d).sum(-1) < cutoff2
        mask[torch.arange(rows.shape[0], device=positions.device), rows] = False
        hits = torch.nonzero(mask)  # [P, 2]
        bi, bj = hits[:, 0], hits[:, 1]
        found_i.append(rows[bi])
        found_j.append(bj)
        found_s.append(-torch.stack([na[bi, bj], nb[bi, bj], nc[bi, bj]], dim=1))
    edge_index = torch.stack([torch.cat(found_i), torch.cat(found_j)])
    return edge_index, torch.cat(found_s).to(positions.dtype)


def _all_image_pairs(positions: Tensor, cutoff: float, cell: Tensor) -> Tuple[Tensor, Tensor]:
    """Any cell: wrap into the cell, then try every lattice translation that can reach the cutoff."""
    n = positions.shape[0]
    cutoff2 = cutoff * cutoff
    fractional = positions @ torch.linalg.inv(cell)
    wrap = torch.floor(fractional)  # [N, 3] lattice translations applied by wrapping
    wrapped = positions - wrap @ cell
    reach = torch.ceil(cutoff / cell_widths(cell)).to(torch.long) + 1  # [3]
    ranges = [torch.arange(-int(reach[k]), int(reach[k]) + 1, device=positions.device) for k in range(3)]
    translations = torch.cartesian_prod(ranges[0], ranges[1], ranges[2]).to(positions.dtype)  # [T, 3]
    offsets = translations @ cell  # [T, 3]
    all_j = torch.arange(n, device=positions.device)
    found_i: List[Tensor] = []
    found_j: List[Tensor] = []
    found_s: List[Tensor] = []
    step = _row_block(n)
    for t in range(translations.shape[0]):
        is_origin = bool((translations[t] == 0).all())
        for start in range(0, n, step):
            rows = torch.arange(start, min(start + step, n), device=positions.device)
            d = wrapped.unsqueeze(0) + offsets[t] - wrapped[rows].unsqueeze(1)  # [B, N, 3]
            mask = (d * d).sum(-1) < cutoff2
            if is_origin:
                mask = mask & (rows.unsqueeze(1) != all_j.unsqueeze(0))
            hits = torch.nonzero(mask)  # [P, 2]
            bi, bj = hits[:, 0], hits[:, 1]
            i = rows[bi]
            found_i.append(i)
            found_j.append(bj)
            found_s.append(translations[t].unsqueeze(0) - wrap[bj] + wrap[i])
    edge_index = torch.stack([torch.cat(found_i), torch.cat(found_j)])
    return edge_index, torch.cat(found_s)


def neighbor_list(positions: Tensor, cutoff: float, cell: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """All ordered pairs closer than ``cutoff``.

    Parameters
    ----------
    positions : [N, 3] coordinates (any length unit, the same as ``cutoff`` and ``cell``).
    cutoff : radius; pairs with distance strictly below it are listed.
    cell : [3, 3] lattice vectors as rows, or None for an open (non-periodic) system.

    Returns
    -------
    edge_index : LongTensor [2, E] (centre i, neighbour j).
    shifts : [E, 3] integer lattice translations of j, in the positions' dtype.
    """
    positions = positions.detach()
    if positions.shape[0] == 0:
        empty = torch.zeros((2, 0), dtype=torch.long, device=positions.device)
        return empty, torch.zeros((0, 3), dtype=positions.dtype, device=positions.device)
    if cell is None:
        return _free_pairs(positions, cutoff)
    cell = cell.detach().to(positions.dtype)
    if is_reduced_form(cell) and bool((torch.diagonal(cell) >= 2.0 * cutoff).all()):
        return _minimum_image_pairs(positions, cutoff, cell)
    return _all_image_pairs(positions, cutoff, cell)
