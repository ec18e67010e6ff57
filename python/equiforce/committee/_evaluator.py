"""How much a committee's members disagree: energy spread and per-atom force spread of structures.

For members k = 1..K with energies E_k (eV) and forces F_k (eV/Å) on one structure of N atoms:

* energy spread: std_k E_k = sqrt(mean_k (E_k - mean E)^2) (eV; population std, no K-1), and per atom (eV/atom);
* force spread of atom i: sqrt(mean_k |F_k,i - mean_k F_k,i|^2) (eV/Å), a rotation-invariant magnitude;
* its maximum over atoms and the atom where it is reached: what an active-learning sampler ranks frames by
  (:func:`force_disagreement`) and what :class:`~equiforce.committee.CommitteeReporter` watches during MD.
"""
import dataclasses
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..export import load_model, model_dtype, read_metadata
from ..export._metadata import DTYPES
from ._export import COMMITTEE_ARCHITECTURE


@dataclasses.dataclass
class CommitteeSpread:
    """The members' disagreement on one structure (units in the names: eV, Å)."""

    #: members' mean energy, eV
    energy_mean_ev: float
    #: std over members of the energy, eV
    energy_std_ev: float
    #: the same per atom, eV/atom
    energy_std_ev_per_atom: float
    #: [N] per-atom force spread sqrt(mean_k |F_k - F_mean|^2), eV/Å
    force_std_ev_per_angstrom: np.ndarray
    #: its maximum over atoms, eV/Å
    max_force_std_ev_per_angstrom: float
    #: index (in the structure given) of the atom with the largest force spread
    max_force_std_atom: int
    #: [K] members' energies, eV
    member_energies_ev: np.ndarray
    #: [N, 3] members' mean forces (the forces MD with the committee file feels), eV/Å
    mean_forces_ev_per_angstrom: np.ndarray


def spread_of_members(energies: np.ndarray, forces: np.ndarray) -> CommitteeSpread:
    """The spread of members' energies [K] (eV) and forces [K, N, 3] (eV/Å) of one structure (float64)."""
    energies = np.asarray(energies, dtype=np.float64)  # [K]
    forces = np.asarray(forces, dtype=np.float64)  # [K, N, 3]
    if energies.ndim != 1 or forces.ndim != 3 or forces.shape[0] != energies.shape[0] or forces.shape[2] != 3:
        raise ValueError(f"expected energies [K] and forces [K, N, 3], got {energies.shape} and {forces.shape}")
    n_atoms = forces.shape[1]
    mean_forces = forces.mean(axis=0)  # [N, 3]
    force_std = np.sqrt(np.mean(np.sum((forces - mean_forces) ** 2, axis=2), axis=0))  # [N]
    worst = int(np.argmax(force_std)) if n_atoms else -1
    energy_std = float(np.std(energies))
    return CommitteeSpread(
        energy_mean_ev=float(np.mean(energies)), energy_std_ev=energy_std,
        energy_std_ev_per_atom=energy_std / max(n_atoms, 1), force_std_ev_per_angstrom=force_std,
        max_force_std_ev_per_angstrom=float(force_std[worst]) if n_atoms else 0.0, max_force_std_atom=worst,
        member_energies_ev=energies, mean_forces_ev_per_angstrom=mean_forces)


class _Member:
    """One model file used as a committee member (its own neighbour list): energies [1], forces [1, N, 3]."""

    def __init__(self, module: torch.jit.ScriptModule, metadata: Dict[str, Any]) -> None:
        self.module = module
        self.metadata = metadata

    def __call__(self, positions: torch.Tensor, species: torch.Tensor,
                 cell: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            x = positions.detach().clone().requires_grad_(True)
            energy = self.module(x, species, cell)  # eV
            (gradient,) = torch.autograd.grad(energy, x, allow_unused=True)
        forces = torch.zeros_like(x) if gradient is None else -gradient
        return energy.detach().reshape(1), forces.unsqueeze(0)


class CommitteeEvaluator:
    """Members' energies and forces, and their spread, for structures (Å, eV, eV/Å).

    Parameters
    ----------
    model : a committee file (:func:`~equiforce.committee.export_committee`; one neighbour list for all
        members), or a list of model files, each one member (any equiforce file, imported ones included; each
        runs on its own; a list of one committee file is that committee).
    device : torch device the members run on.
    precision : "float32" or "float64" to run in that precision; None keeps the files'.
    """

    def __init__(self, model: Union[str, "os.PathLike[str]", Sequence[str]], device: str = "cpu",
                 precision: Optional[str] = None) -> None:
        if precision is not None and precision not in DTYPES:
            raise ValueError(f"precision must be one of {sorted(DTYPES)} or None, got {precision!r}")
        paths = [os.fspath(model)] if isinstance(model, (str, os.PathLike)) else [os.fspath(p) for p in model]
        if not paths:
            raise ValueError("CommitteeEvaluator needs a committee file or a list of model files")
        self.device = torch.device(device)
        self.files = paths
        metadata = [read_metadata(path) for path in paths]
        committees = [p for p, m in zip(paths, metadata) if m.get("architecture") == COMMITTEE_ARCHITECTURE]
        if len(paths) == 1 and not committees:
            raise ValueError(f"{paths[0]} is a single model, not a committee file (equiforce committee / "
                             "export_committee); give a list of several model files to use them as a committee")
        if len(paths) > 1 and committees:
            raise ValueError(f"{committees[0]} is a committee file: give it alone, or a list of single-model files")
        self.committee = None
        self.members: List[_Member] = []
        if committees:
            module, self.metadata = load_model(paths[0], device=device)
            self.committee = module if precision is None else module.to(DTYPES[precision])
            self.num_members = int(self.metadata["committee"]["num_members"])
            self.member_elements = [list(self.metadata["elements"])]
        else:
            loaded: Dict[str, _Member] = {}  # a file listed twice is loaded once
            for path in paths:
                key = os.path.realpath(path)
                if key not in loaded:
                    module, meta = load_model(path, device=device)
                    loaded[key] = _Member(module if precision is None else module.to(DTYPES[precision]), meta)
                self.members.append(loaded[key])
            self.metadata = self.members[0].metadata
            self.num_members = len(self.members)
            self.member_elements = [list(m.metadata["elements"]) for m in self.members]
        self.dtype = model_dtype(self.committee if self.committee is not None else self.members[0].module)
        self._species_cache: Optional[Tuple[np.ndarray, List[torch.Tensor]]] = None

    def species(self, atomic_numbers: Sequence[int]) -> List[torch.Tensor]:
        """[N] species indices of each member's (one tensor for a committee file) for these atomic numbers;
        the first atom of an element a member does not know raises a ValueError naming it."""
        numbers = np.asarray(atomic_numbers, dtype=np.int64).reshape(-1)
        if self._species_cache is not None and np.array_equal(self._species_cache[0], numbers):
            return self._species_cache[1]
        from ase.data import atomic_numbers as number_of, chemical_symbols

        result = []
        for member, elements in enumerate(self.member_elements):
            index = {number_of[symbol]: k for k, symbol in enumerate(elements)}
            for atom, z in enumerate(numbers.tolist()):
                if z not in index:
                    symbol = chemical_symbols[z] if 0 <= z < len(chemical_symbols) else f"Z={z}"
                    which = self.files[0] if self.committee is not None else self.files[member]
                    raise ValueError(f"atom {atom} is element {symbol}; {which} knows only {elements}")
            result.append(torch.tensor([index[z] for z in numbers.tolist()], dtype=torch.long, device=self.device))
        self._species_cache = (numbers.copy(), result)
        return result

    def member_energies_and_forces(self, positions, atomic_numbers: Sequence[int],
                                   cell=None) -> Tuple[np.ndarray, np.ndarray]:
        """Members' energies [K] (eV) and forces [K, N, 3] (eV/Å), float64 arrays, of one structure:
        positions [N, 3] Å, atomic numbers [N], cell [3, 3] Å rows (periodic) or None (open boundaries)."""
        x = torch.as_tensor(np.asarray(positions, dtype=np.float64), device=self.device).to(self.dtype)  # [N, 3] Å
        if x.ndim != 2 or x.shape[1] != 3:
            raise ValueError(f"positions must be [N, 3] Å, got shape {tuple(x.shape)}")
        box = None
        if cell is not None:
            box = torch.as_tensor(np.asarray(cell, dtype=np.float64), device=self.device).to(self.dtype)  # [3, 3]
        species = self.species(atomic_numbers)
        if len(species[0]) != len(x):
            raise ValueError(f"{len(x)} positions but {len(species[0])} atomic numbers")
        if self.committee is not None:
            with torch.enable_grad():
                energies, forces = self.committee.member_forces(x, species[0], box)  # [K], [K, N, 3]
        else:
            pairs = [member(x, s, box) for member, s in zip(self.members, species)]
            energies = torch.cat([e for e, _ in pairs])
            forces = torch.cat([f for _, f in pairs])
        return (energies.detach().cpu().to(torch.float64).numpy(),
                forces.detach().cpu().to(torch.float64).numpy())

    def spread(self, positions, atomic_numbers: Sequence[int], cell=None) -> CommitteeSpread:
        """The members' disagreement on one structure (see :class:`CommitteeSpread`); arguments as
        :meth:`member_energies_and_forces`."""
        return spread_of_members(*self.member_energies_and_forces(positions, atomic_numbers, cell))

    def spread_frames(self, frames) -> List[CommitteeSpread]:
        """:meth:`spread` of each ASE ``Atoms`` in ``frames`` (periodic when ``pbc`` is all True, open when all
        False; a frame with mixed periodicity raises a ValueError naming it)."""
        results = []
        for index, atoms in enumerate(_as_frames(frames)):
            pbc = np.asarray(atoms.pbc)
            if pbc.any() and not pbc.all():
                raise ValueError(f"frame {index}: mixed periodicity {pbc.tolist()} is not supported: use all or none")
            cell = np.asarray(atoms.cell) if pbc.all() else None
            try:
                results.append(self.spread(atoms.positions, atoms.numbers, cell))
            except ValueError as error:
                raise ValueError(f"frame {index}: {error}") from None
        return results


def _as_frames(frames) -> list:
    """A list of ASE Atoms from one Atoms or any sequence of them."""
    from ase import Atoms

    return [frames] if isinstance(frames, Atoms) else list(frames)


def _evaluator(model) -> CommitteeEvaluator:
    return model if isinstance(model, CommitteeEvaluator) else CommitteeEvaluator(model)


def committee_spread(model, structure, atomic_numbers: Optional[Sequence[int]] = None, cell=None):
    """The members' disagreement on one structure or on frames.

    Parameters
    ----------
    model : a committee file, a list of model files, or a :class:`CommitteeEvaluator`.
    structure : positions [N, 3] Å (then ``atomic_numbers`` [N] and ``cell`` [3, 3] Å or None), one ASE
        ``Atoms``, or a list of them.

    Returns
    -------
    :class:`CommitteeSpread` for one structure (positions or one Atoms), a list of them for a list of frames.
    """
    from ase import Atoms

    evaluator = _evaluator(model)
    if isinstance(structure, Atoms):
        return evaluator.spread_frames([structure])[0]
    if isinstance(structure, (list, tuple)) and structure and isinstance(structure[0], Atoms):
        return evaluator.spread_frames(structure)
    if atomic_numbers is None:
        raise ValueError("committee_spread with positions needs atomic_numbers (and cell for a periodic structure)")
    return evaluator.spread(structure, atomic_numbers, cell)


def force_disagreement(committee_file, frames) -> np.ndarray:
    """[n_frames] largest per-atom force spread of each frame, eV/Å (see the module docstring).

    ``committee_file``: a committee file, a list of model files or a :class:`CommitteeEvaluator` (reuse one
    across calls to load the file once); ``frames``: ASE ``Atoms`` (one or a list)."""
    spreads = _evaluator(committee_file).spread_frames(frames)
    return np.array([s.max_force_std_ev_per_angstrom for s in spreads], dtype=np.float64)
