"""``GuardReporter``: an opt-in OpenMM reporter that stops a run at the first sign of a blow-up.

Every ``interval`` steps it checks the state OpenMM hands to reporters: no two atoms (of ``atoms``, default all)
are closer than ``min_distance`` (nm; periodic images included, found with equiforce's O(N) neighbour list), the
potential energy is finite, and no atom feels a force above ``max_force`` (kJ/mol/nm). Distances come first, so
overlapping atoms (whose energy is +inf) are reported by name. A healthy state is
kept as an in-memory ``Context.createCheckpoint``. At the first failed check it writes the last healthy checkpoint
to ``checkpoint_file``, flushes the files of the simulation's other reporters (so no trajectory frame already
reported is lost), and raises :class:`SimulationBlowUp` naming the step, the check and the atoms.

Cost: one force evaluation per check plus the checks themselves: 0.9998x an unguarded run's time at
``interval=100`` on 96 atoms (``benchmarks/long_runs/guard_cost.py``, ``benchmarks/results/guard_cost.json``).
"""
import math
from typing import Iterable, List, Optional

import numpy as np
import openmm
import openmm.app as app
import torch
from openmm import unit

from ._boundary import closest_pair
from ._force import _atom_label


class SimulationBlowUp(RuntimeError):
    """A :class:`GuardReporter` check failed: the message names the step, the check and the atoms."""


def _atom_names(topology: app.Topology, indices: Iterable[int]) -> str:
    atoms = list(topology.atoms())
    return ", ".join(_atom_label(atoms[int(i)]) for i in indices)


class GuardReporter:
    """Checks energy, forces and distances every ``interval`` steps; see the module docstring.

    Parameters
    ----------
    interval : steps between checks.
    checkpoint_file : where the last healthy state is written when a check fails.
    max_force : kJ/mol/nm; larger forces on any atom count as a blow-up (default 1e5: 10 eV/Å is 9.6e4).
    min_distance : nm; two atoms closer than this count as a blow-up (default 0.05 nm = 0.5 Å).
    atoms : indices of the atoms whose distances are checked (e.g. the ML region); None: all atoms.
    """

    def __init__(self, interval: int, checkpoint_file: str, max_force: float = 1e5, min_distance: float = 0.05,
                 atoms: Optional[Iterable[int]] = None) -> None:
        if interval < 1:
            raise ValueError(f"interval must be at least 1 step, got {interval}")
        self.interval = int(interval)
        self.checkpoint_file = checkpoint_file
        self.max_force = float(max_force)
        self.min_distance = float(min_distance)
        self.atoms: Optional[List[int]] = None if atoms is None else [int(i) for i in atoms]
        self.last_good_step: Optional[int] = None
        self._last_good: Optional[bytes] = None
        self.checks = 0

    def describeNextReport(self, simulation: app.Simulation):
        steps = self.interval - simulation.currentStep % self.interval
        return {"steps": steps, "periodic": False, "include": ["positions"]}

    def _failure(self, simulation: app.Simulation, state: openmm.State) -> Optional[str]:
        topology = simulation.topology
        positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        selected = np.arange(len(positions)) if self.atoms is None else np.asarray(self.atoms)
        box = None
        if simulation.system.usesPeriodicBoundaryConditions():
            box = np.array(state.getPeriodicBoxVectors().value_in_unit(unit.nanometer))
        if not np.all(np.isfinite(positions[selected])):
            bad = selected[~np.all(np.isfinite(positions[selected]), axis=1)][:5]
            return "non-finite positions of " + _atom_names(topology, bad)
        pair = closest_pair(torch.tensor(positions[selected]), self.min_distance,
                            None if box is None else torch.tensor(box))
        if pair is not None:
            i, j, distance = pair
            return (f"{_atom_names(topology, [selected[i]])} and {_atom_names(topology, [selected[j]])} are "
                    f"{distance:.4g} nm apart (limit {self.min_distance:.4g})")
        try:  # asked here, after the distances: an equiforce force raises on overlapping atoms
            state = simulation.context.getState(getEnergy=True, getForces=True)
        except openmm.OpenMMException as error:
            reason = str(error).strip().splitlines()[-1]
            return f"the forces could not be computed ({reason})"
        energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        if not math.isfinite(energy):
            return f"the potential energy is {energy} kJ/mol"
        forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        magnitudes = np.linalg.norm(forces, axis=1)  # [N] kJ/mol/nm
        if not np.all(np.isfinite(magnitudes)):
            bad = np.flatnonzero(~np.isfinite(magnitudes))[:5]
            return "non-finite forces on " + _atom_names(topology, bad)
        worst = int(np.argmax(magnitudes))
        if magnitudes[worst] > self.max_force:
            return (f"the force on {_atom_names(topology, [worst])} is {magnitudes[worst]:.4g} kJ/mol/nm "
                    f"(limit {self.max_force:.4g})")
        return None

    def check(self, simulation: app.Simulation) -> None:
        """Check the context's current state now (e.g. after ``setPositions``, before a run), as a report would."""
        self.report(simulation, simulation.context.getState(getPositions=True))

    def report(self, simulation: app.Simulation, state: openmm.State) -> None:
        self.checks += 1
        failure = self._failure(simulation, state)
        if failure is None:
            self._last_good = simulation.context.createCheckpoint()
            self.last_good_step = simulation.currentStep
            return
        for reporter in simulation.reporters:  # keep every frame other reporters have already written
            handle = getattr(reporter, "_out", None)
            if handle is not None and hasattr(handle, "flush"):
                handle.flush()
        where = "no healthy state was seen, so no checkpoint was written"
        if self._last_good is not None:
            with open(self.checkpoint_file, "wb") as output:
                output.write(self._last_good)
            where = f"the last healthy state (step {self.last_good_step}) is in {self.checkpoint_file}"
        raise SimulationBlowUp(f"step {simulation.currentStep}: {failure}; {where}")
