"""One frame labelled with GFN2-xTB (tblite): settings, input checks, the SCF with one damped retry.

This module imports neither torch nor the rest of equiforce at module level: it is what the worker processes run.
tblite itself is imported lazily, inside :func:`label_task`, so that a worker sets its thread count first.

Units: positions and cells in Å, energies in eV, forces in eV/Å, dipoles in e·Å, charges in e. tblite works in
atomic units (Hartree, bohr; its dipole is in e·bohr); its ASE calculator converts with ``ase.units.Hartree`` and
``ase.units.Bohr``, the constants ASE itself uses, and we take its results as they come.
"""
import dataclasses
from typing import Any, Dict, Optional

import numpy as np

#: Methods ``label_frames`` knows: command-line name -> tblite's method name.
METHODS = {"gfn2": "GFN2-xTB"}

#: Largest atomic number GFN2-xTB has parameters for (H..Rn).
GFN2_MAX_ATOMIC_NUMBER = 86

#: The retry after a failed SCF: mixer damping, and the iteration budget as a multiple of ``max_iterations``.
RETRY_MIXER_DAMPING = 0.2
RETRY_ITERATION_FACTOR = 4


class LabelError(ValueError):
    """A frame that cannot be labelled as given (unsupported element, partial periodicity, bad charge)."""


@dataclasses.dataclass(frozen=True)
class LabelSettings:
    """How every frame is labelled (recorded in the ``.label.json`` sidecar; a rerun must use the same).

    Attributes
    ----------
    method : str
        Key of :data:`METHODS` (``"gfn2"``).
    accuracy : float
        tblite's numerical accuracy (smaller is tighter; 1.0 is its default).
    electronic_temperature_K : float
        Fermi smearing temperature, K.
    max_iterations : int
        SCF iterations of the first attempt. A frame that fails is tried once more with the mixer damping
        :data:`RETRY_MIXER_DAMPING` and ``RETRY_ITERATION_FACTOR * max_iterations`` iterations (the water recipe's
        250 -> 1000).
    retry : bool
        Whether to make that second attempt.
    default_charge : int
        Total charge, e, of frames whose ``info`` has no ``"charge"``.
    """

    method: str = "gfn2"
    accuracy: float = 1.0
    electronic_temperature_K: float = 300.0
    max_iterations: int = 250
    retry: bool = True
    default_charge: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown labelling method {self.method!r}; known: {', '.join(METHODS)}")
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {self.max_iterations}")
        if self.accuracy <= 0 or self.electronic_temperature_K <= 0:
            raise ValueError(f"accuracy and electronic_temperature_K must be > 0, got {self.accuracy} and "
                             f"{self.electronic_temperature_K}")

    def attempts(self):
        """tblite calculator keywords of each SCF attempt, in order."""
        first = dict(method=METHODS[self.method], accuracy=self.accuracy,
                     electronic_temperature=self.electronic_temperature_K, max_iterations=self.max_iterations)
        if not self.retry:
            return [first]
        second = dict(first, mixer_damping=RETRY_MIXER_DAMPING,
                      max_iterations=RETRY_ITERATION_FACTOR * self.max_iterations)
        return [first, second]


def frame_charge(info: Dict[str, Any], default_charge: int, frame: int) -> int:
    """Total charge (e) of a frame: ``info["charge"]`` when present, else ``default_charge``.

    Raises :class:`LabelError` naming ``frame`` when the charge is not an integer.
    """
    value = info.get("charge", default_charge)
    try:
        charge = float(value)
    except (TypeError, ValueError):
        raise LabelError(f"frame {frame}: info['charge'] = {value!r} is not a number") from None
    if charge != round(charge):
        raise LabelError(f"frame {frame}: total charge {charge} is not an integer number of e")
    return int(round(charge))


def check_frame(numbers: np.ndarray, pbc: np.ndarray, cell: np.ndarray, frame: int) -> None:
    """Refuse, before any work starts, a frame GFN2-xTB cannot label.

    Parameters
    ----------
    numbers : ndarray [n_atoms], int
        Atomic numbers.
    pbc : ndarray [3], bool
        Periodic directions: all or none.
    cell : ndarray [3, 3]
        Cell rows, Å (must have a positive volume when periodic).
    frame : int
        Index of the frame in the input file, for the message.
    """
    from ase.data import chemical_symbols

    if len(numbers) == 0:
        raise LabelError(f"frame {frame}: no atoms")
    bad = sorted({int(z) for z in numbers if z < 1 or z > GFN2_MAX_ATOMIC_NUMBER})
    if bad:
        names = ", ".join(f"{chemical_symbols[z] if 0 <= z < len(chemical_symbols) else '?'} (Z={z})" for z in bad)
        raise LabelError(f"frame {frame}: element {names} is not covered by GFN2-xTB (Z = 1..{GFN2_MAX_ATOMIC_NUMBER})")
    if pbc.any() and not pbc.all():
        raise LabelError(f"frame {frame}: periodic in some directions only (pbc={pbc.tolist()}); tblite needs "
                         "a frame periodic in all three directions or in none")
    if pbc.all() and not abs(np.linalg.det(cell)) > 0:
        raise LabelError(f"frame {frame}: periodic but its cell has zero volume")


def label_task(task: Dict[str, Any]) -> Dict[str, Any]:
    """Label one frame; what a worker process runs.

    Parameters
    ----------
    task : dict
        ``index`` (int, frame in the input), ``numbers`` [n_atoms], ``positions`` [n_atoms, 3] Å, ``cell``
        [3, 3] Å, ``pbc`` [3], ``charge`` (int, e) and ``settings`` (:class:`LabelSettings`).

    Returns
    -------
    dict
        ``index``; on success ``energy`` (eV), ``forces`` [n_atoms, 3] (eV/Å), ``dipole`` [3] (e·Å, open
        frames only, else None), ``scf_attempt`` (0 first try, 1 the retry) and ``seconds``; on failure
        ``error`` (the last attempt's message) and ``attempts``. Never raises for an SCF failure.
    """
    import time

    from ase import Atoms
    from tblite.ase import TBLite

    start = time.perf_counter()
    settings: LabelSettings = task["settings"]
    atoms = Atoms(numbers=task["numbers"], positions=task["positions"], cell=task["cell"], pbc=task["pbc"])
    errors = []
    for attempt, keywords in enumerate(settings.attempts()):
        # A fresh calculator per attempt and frame: the result does not depend on what ran before.
        atoms.calc = TBLite(verbosity=0, charge=task["charge"], **keywords)
        try:
            energy = float(atoms.get_potential_energy())
            forces = np.array(atoms.get_forces(), dtype=np.float64)  # [n_atoms, 3]
            dipole = None if task["pbc"].any() else np.array(atoms.calc.results["dipole"], dtype=np.float64)
        except Exception as error:  # tblite raises CalculationFailed for an SCF that does not converge
            errors.append(f"{type(error).__name__}: {error}")
            continue
        if not (np.isfinite(energy) and np.isfinite(forces).all()):
            errors.append("non-finite energy or forces")
            continue
        return dict(index=task["index"], energy=energy, forces=forces, dipole=dipole, scf_attempt=attempt,
                    seconds=time.perf_counter() - start)
    return dict(index=task["index"], error="; ".join(f"attempt {k}: {e}" for k, e in enumerate(errors)),
                attempts=len(errors), seconds=time.perf_counter() - start)


def make_task(atoms, index: int, settings: LabelSettings, charge: Optional[int] = None) -> Dict[str, Any]:
    """The picklable work item of one ``ase.Atoms`` frame (checked with :func:`check_frame` first)."""
    numbers = np.asarray(atoms.numbers)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.array(atoms.cell[:], dtype=np.float64)
    check_frame(numbers, pbc, cell, index)
    if charge is None:
        charge = frame_charge(atoms.info, settings.default_charge, index)
    return dict(index=index, numbers=numbers, positions=np.array(atoms.positions, dtype=np.float64), cell=cell,
                pbc=pbc, charge=charge, settings=settings)


def label_atoms(atoms, settings: Optional[LabelSettings] = None, index: int = 0):
    """Label one ``ase.Atoms`` in this process; returns :func:`label_task`'s dict (``error`` on SCF failure)."""
    settings = settings or LabelSettings()
    return label_task(make_task(atoms, index, settings))
