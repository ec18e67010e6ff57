"""Extremes of a periodic water box's geometry: the shortest and longest distances a trajectory reaches.

Used to find where an NVE run leaves the region the model was trained on (stretched O–H bonds, close
intermolecular contacts, protons that moved to another oxygen). Atoms are ordered O, H, H per molecule, as
:func:`equiforce.systems.water_topology` builds them; the box is orthorhombic (minimum image per axis).
"""
from typing import Dict

import numpy as np

from .units import nm_to_angstrom

#: Keys of :func:`water_extremes`, in the order a trace stores them.
EXTREME_NAMES = ("oh_bond_min", "oh_bond_max", "hoh_angle_min", "hoh_angle_max", "oh_inter_min", "hh_inter_min",
                 "oo_min", "protons_closer_to_another_oxygen")


def _minimum_image(delta: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """delta [..., 3] (any length unit), edges [3] (same unit): each component wrapped into [-edge/2, edge/2]."""
    return delta - edges * np.round(delta / edges)


def orthorhombic_edges_nm(box_vectors_nm: np.ndarray) -> np.ndarray:
    """The three edges (nm) of an orthorhombic box given as vectors [3, 3]; other boxes are refused."""
    box = np.asarray(box_vectors_nm, dtype=float)
    off_diagonal = box - np.diag(np.diag(box))
    if np.abs(off_diagonal).max() > 1e-9 * np.abs(box).max():
        raise ValueError(f"water_extremes needs an orthorhombic box; box vectors (nm) are {box.tolist()}")
    return np.diag(box).copy()


def bonds_and_angles(molecules_angstrom: np.ndarray, edges_angstrom: np.ndarray):
    """molecules_angstrom [..., M, 3 atoms (O, H, H), 3] Å, edges_angstrom [3] -> (O–H lengths [..., M, 2] Å,
    H–O–H angles [..., M] degrees), minimum image."""
    bonds = _minimum_image(molecules_angstrom[..., 1:, :] - molecules_angstrom[..., :1, :], edges_angstrom)
    lengths = np.linalg.norm(bonds, axis=-1)  # [..., M, 2]
    cosine = np.sum(bonds[..., 0, :] * bonds[..., 1, :], axis=-1) / (lengths[..., 0] * lengths[..., 1])
    return lengths, np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def water_extremes(positions_nm: np.ndarray, box_vectors_nm: np.ndarray) -> Dict[str, float]:
    """Extreme geometry of a water box: distances in Å, angles in degrees.

    positions_nm [3 M, 3] (O, H, H per molecule), box_vectors_nm [3, 3] (orthorhombic). Returns
    ``oh_bond_min`` / ``oh_bond_max`` (each H to its own O), ``hoh_angle_min`` / ``hoh_angle_max``,
    ``oh_inter_min`` (an H to another molecule's O), ``hh_inter_min`` (H to H of different molecules),
    ``oo_min`` (between oxygens), and ``protons_closer_to_another_oxygen`` (how many H are nearer a foreign O
    than their own: a proton transfer, or a molecule coming apart).
    """
    positions = nm_to_angstrom(np.asarray(positions_nm, dtype=float))  # [3 M, 3] Å
    if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) % 3:
        raise ValueError(f"positions must be [3 M, 3] (O, H, H per molecule), got shape {positions.shape}")
    edges = nm_to_angstrom(orthorhombic_edges_nm(box_vectors_nm))  # [3] Å
    molecules = positions.reshape(-1, 3, 3)  # [M, 3 atoms, 3]
    n_molecules = len(molecules)
    oxygens = molecules[:, 0]  # [M, 3]
    hydrogens = molecules[:, 1:].reshape(-1, 3)  # [2 M, 3]: H1, H2 of molecule 0, then of molecule 1, ...
    owner = np.repeat(np.arange(n_molecules), 2)  # [2 M]: the molecule of each H

    bond_lengths, angles = bonds_and_angles(molecules, edges)  # [M, 2] Å, [M] degrees

    h_to_o = np.linalg.norm(_minimum_image(hydrogens[:, None] - oxygens[None], edges), axis=-1)  # [2 M, M]
    own = h_to_o[np.arange(2 * n_molecules), owner]  # [2 M]
    foreign = h_to_o.copy()
    foreign[np.arange(2 * n_molecules), owner] = np.inf

    h_to_h = np.linalg.norm(_minimum_image(hydrogens[:, None] - hydrogens[None], edges), axis=-1)  # [2 M, 2 M]
    h_to_h[owner[:, None] == owner[None]] = np.inf  # same molecule (and self)
    o_to_o = np.linalg.norm(_minimum_image(oxygens[:, None] - oxygens[None], edges), axis=-1)  # [M, M]
    np.fill_diagonal(o_to_o, np.inf)

    return {
        "oh_bond_min": float(bond_lengths.min()),
        "oh_bond_max": float(bond_lengths.max()),
        "hoh_angle_min": float(angles.min()),
        "hoh_angle_max": float(angles.max()),
        "oh_inter_min": float(foreign.min()) if n_molecules > 1 else float("inf"),
        "hh_inter_min": float(h_to_h.min()) if n_molecules > 1 else float("inf"),
        "oo_min": float(o_to_o.min()) if n_molecules > 1 else float("inf"),
        "protons_closer_to_another_oxygen": float(np.sum(foreign.min(axis=1) < own)) if n_molecules > 1 else 0.0,
    }


def wall_contacts(positions_nm: np.ndarray, box_vectors_nm: np.ndarray, radii: Dict[str, float],
                  strength: float) -> Dict[str, float]:
    """How deep a water box sits in a model's short-range wall (``equiforce.nn._repulsion``).

    positions_nm [3 M, 3] (O, H, H per molecule), box_vectors_nm [3, 3] (orthorhombic); ``radii``: onset in Å per
    element pair (``"H-H"``, ``"H-O"``, ``"O-O"``, as in an exported file's ``config.repulsion_radii``);
    ``strength``: A in eV. Returns the wall energy of the box (eV, each unordered pair A (r_on/r - 1)^3), the
    part of it inside molecules, the largest energy of one pair and the pair's atoms, the number of pairs inside
    the wall, and the shortest intramolecular H–H distance (Å).
    """
    positions = nm_to_angstrom(np.asarray(positions_nm, dtype=float))  # [N, 3] Å
    if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) % 3:
        raise ValueError(f"positions must be [3 M, 3] (O, H, H per molecule), got shape {positions.shape}")
    edges = nm_to_angstrom(orthorhombic_edges_nm(box_vectors_nm))  # [3] Å
    n_atoms = len(positions)
    is_oxygen = np.arange(n_atoms) % 3 == 0  # [N]
    molecule = np.arange(n_atoms) // 3  # [N]
    onset = np.zeros((2, 2))  # [is_oxygen a, is_oxygen b] Å; 0: no wall
    for key, radius in radii.items():
        pair = sorted(key.split("-"))
        if any(symbol not in ("H", "O") for symbol in pair):
            raise ValueError(f"wall_contacts knows water's elements H and O; the radii name the pair {key!r}")
        a, b = (symbol == "O" for symbol in pair)
        onset[int(a), int(b)] = onset[int(b), int(a)] = float(radius)
    first, second = np.triu_indices(n_atoms, k=1)  # [P] unordered pairs
    distance = np.linalg.norm(_minimum_image(positions[first] - positions[second], edges), axis=-1)  # [P] Å
    pair_onset = onset[is_oxygen[first].astype(int), is_oxygen[second].astype(int)]  # [P] Å
    inside = (distance < pair_onset) & (pair_onset > 0)  # [P]
    energy = np.zeros_like(distance)  # [P] eV
    energy[inside] = strength * (pair_onset[inside] / distance[inside] - 1.0) ** 3
    same_molecule = molecule[first] == molecule[second]  # [P]
    hh_intra = same_molecule & ~is_oxygen[first] & ~is_oxygen[second]
    deepest = int(np.argmax(energy))
    return {"wall_energy_eV": float(energy.sum()), "intramolecular_wall_energy_eV": float(energy[same_molecule].sum()),
            "largest_pair_energy_eV": float(energy[deepest]), "largest_pair_atoms": (int(first[deepest]), int(second[deepest])),
            "pairs_inside": int(inside.sum()), "hh_intra_min": float(distance[hh_intra].min())}
