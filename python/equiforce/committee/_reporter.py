"""``CommitteeReporter``: an OpenMM reporter that logs a committee's spread during MD and can stop the run.

Every ``interval`` steps it evaluates the committee (its members one by one, on one neighbour list) at the
current positions of the ML atoms, and records the step, the time (ps), the members' energy std (kJ/mol), the
largest per-atom force spread sqrt(mean_k |F_k - F_mean|^2) (kJ/mol/nm) and the atom where it is reached, in
memory (``records``) and as a CSV row. When that spread passes ``threshold`` (eV/Å, the model's unit) it
writes the row, flushes its file and the other reporters' files, and raises :class:`CommitteeSpreadExceeded`
naming the step, the spread and the atom.

Cost: one evaluation of every member (forward, and one backward pass each) per report, on top of the force the
System computes every step.
"""
import csv
import os
from typing import Any, Dict, Iterable, List, Optional

import numpy as np
import openmm
import openmm.app as app
import torch
from openmm import unit

from ..openmm._boundary import wrap_into_box
from ..openmm._force import _atom_label
from ..units import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV, ev_to_kj_per_mol, nm_to_angstrom
from ._evaluator import CommitteeEvaluator, CommitteeSpread, spread_of_members

#: kJ/mol/nm per eV/Å (a force in eV/Å times this is in kJ/mol/nm).
KJ_PER_MOL_NM_PER_EV_ANGSTROM = KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM

#: Columns of the CSV file and keys of ``CommitteeReporter.records``.
COLUMNS = ["step", "time_ps", "energy_std_kj_per_mol", "max_force_std_kj_per_mol_nm", "atom", "atom_label"]


class CommitteeSpreadExceeded(RuntimeError):
    """A :class:`CommitteeReporter`'s force spread passed its threshold; the message names step, spread and atom.

    Attributes: ``step``, ``spread_ev_per_angstrom``, ``atom`` (System index) and ``record`` (the CSV row)."""

    def __init__(self, message: str, step: int, spread_ev_per_angstrom: float, atom: int,
                 record: Dict[str, Any]) -> None:
        super().__init__(message)
        self.step = step
        self.spread_ev_per_angstrom = spread_ev_per_angstrom
        self.atom = atom
        self.record = record


class CommitteeReporter:
    """Logs the committee's spread every ``interval`` steps; see the module docstring.

    Parameters
    ----------
    committee_file : a committee file (``equiforce committee`` / :func:`export_committee`), a list of model
        files, or a :class:`CommitteeEvaluator`. It need not be the file driving the MD (which may be the
        committee file itself, one member, or any other potential of the same atoms).
    interval : steps between reports.
    file : CSV path (written anew) or an open text file; None keeps the records in memory only.
    atoms : System indices of the ML atoms in the order ``create_force(..., atoms=...)`` used; None: all atoms.
    threshold : eV/Å; a largest per-atom force spread above it stops the run (None: never).
    precision : "float32" or "float64" to evaluate the committee in; None keeps the file's.
    """

    def __init__(self, committee_file, interval: int, file=None, atoms: Optional[Iterable[int]] = None,
                 threshold: Optional[float] = None, precision: Optional[str] = None) -> None:
        if interval < 1:
            raise ValueError(f"interval must be at least 1 step, got {interval}")
        if threshold is not None and not threshold > 0:
            raise ValueError(f"threshold must be a positive force spread in eV/Å, got {threshold}")
        self.evaluator = (committee_file if isinstance(committee_file, CommitteeEvaluator)
                          else CommitteeEvaluator(committee_file, precision=precision))
        self.interval = int(interval)
        self.threshold = None if threshold is None else float(threshold)
        self.atoms: Optional[List[int]] = None if atoms is None else [int(i) for i in atoms]
        self.records: List[Dict[str, Any]] = []
        #: the spread of the last report, in the model's units (eV, eV/Å; atoms numbered as the ML atoms)
        self.last_spread: Optional[CommitteeSpread] = None
        self._owns_file = isinstance(file, (str, os.PathLike))
        self._out = open(file, "w", newline="") if self._owns_file else file
        self._writer = None
        if self._out is not None:
            self._writer = csv.writer(self._out)
            self._writer.writerow(COLUMNS)
            self._out.flush()
        self._numbers: Optional[np.ndarray] = None

    def describeNextReport(self, simulation: app.Simulation):
        steps = self.interval - simulation.currentStep % self.interval
        return {"steps": steps, "periodic": False, "include": ["positions"]}

    def _selected(self, topology: app.Topology) -> List[int]:
        n_atoms = topology.getNumAtoms()
        selected = list(range(n_atoms)) if self.atoms is None else self.atoms
        for i in selected:
            if not 0 <= i < n_atoms:
                raise ValueError(f"CommitteeReporter atoms contains index {i}, but the topology has {n_atoms} atoms")
        return selected

    def _atomic_numbers(self, topology: app.Topology) -> np.ndarray:
        if self._numbers is None:
            atoms = list(topology.atoms())
            numbers = []
            for i in self._selected(topology):
                if atoms[i].element is None:
                    raise ValueError(f"{_atom_label(atoms[i])} has no element (a virtual site?); the committee needs one")
                numbers.append(atoms[i].element.atomic_number)
            self._numbers = np.array(numbers, dtype=np.int64)
        return self._numbers

    def spread(self, simulation: app.Simulation, state: openmm.State) -> CommitteeSpread:
        """The committee's spread at ``state``'s positions (eV, eV/Å; atoms numbered as the ML atoms)."""
        numbers = self._atomic_numbers(simulation.topology)
        positions = torch.as_tensor(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))  # [n, 3] nm
        positions = positions.index_select(0, torch.tensor(self._selected(simulation.topology), dtype=torch.long))
        cell = None
        if simulation.system.usesPeriodicBoundaryConditions():
            box = torch.as_tensor(np.array(state.getPeriodicBoxVectors().value_in_unit(unit.nanometer)))  # [3, 3] nm
            positions = wrap_into_box(positions, box)  # in float64, before any cast (as OpenMMEnergy does)
            cell = nm_to_angstrom(box).numpy()  # [3, 3] Å
        energies, forces = self.evaluator.member_energies_and_forces(
            nm_to_angstrom(positions).numpy(), numbers, cell)  # [K] eV, [K, n_ml, 3] eV/Å
        return spread_of_members(energies, forces)

    def report(self, simulation: app.Simulation, state: openmm.State) -> None:
        spread = self.spread(simulation, state)
        self.last_spread = spread
        selected = self._selected(simulation.topology)
        atom = selected[spread.max_force_std_atom]
        label = _atom_label(list(simulation.topology.atoms())[atom])
        record = {
            "step": int(simulation.currentStep),
            "time_ps": float(state.getTime().value_in_unit(unit.picosecond)),
            "energy_std_kj_per_mol": float(ev_to_kj_per_mol(spread.energy_std_ev)),
            "max_force_std_kj_per_mol_nm": spread.max_force_std_ev_per_angstrom * KJ_PER_MOL_NM_PER_EV_ANGSTROM,
            "atom": int(atom),
            "atom_label": label,
        }
        self.records.append(record)
        if self._writer is not None:
            self._writer.writerow([record[c] for c in COLUMNS])
            self._out.flush()
        if self.threshold is not None and spread.max_force_std_ev_per_angstrom > self.threshold:
            for reporter in simulation.reporters:  # keep every frame other reporters have already written
                handle = getattr(reporter, "_out", None)
                if handle is not None and hasattr(handle, "flush") and not getattr(handle, "closed", False):
                    handle.flush()
            raise CommitteeSpreadExceeded(
                f"step {record['step']} (t = {record['time_ps']:.4g} ps): the committee's force spread on "
                f"{label} is {spread.max_force_std_ev_per_angstrom:.4g} eV/Å "
                f"({record['max_force_std_kj_per_mol_nm']:.4g} kJ/mol/nm), above the threshold of "
                f"{self.threshold:.4g} eV/Å; the members disagree here, the structure lies outside their data",
                record["step"], spread.max_force_std_ev_per_angstrom, int(atom), record)

    def check(self, simulation: app.Simulation) -> None:
        """Report on the context's current state now (e.g. before a run), as a scheduled report would."""
        self.report(simulation, simulation.context.getState(getPositions=True))

    def close(self) -> None:
        """Close the CSV file if this reporter opened it (a file object given to it is left open)."""
        if self._owns_file and self._out is not None and not self._out.closed:
            self._out.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
