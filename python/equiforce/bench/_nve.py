"""NVE energy-conservation benchmark: NVT equilibration, then Verlet NVE with the total energy sampled often.

Records: {"method", "dtype", "dt_fs", "n_atoms", "duration_ps", "drift_kT_per_ns_per_dof",
"drift_stderr_kT_per_ns_per_dof", "drift_meV_per_atom_per_ps", "fluctuation_kJ_per_mol", "drift_ratio", ...}.
"""
import os
from typing import Dict, List, Optional

import numpy as np
import openmm
from openmm import unit

from ..analysis import energy_drift
from ..openmm import create_force
from ..systems import classical_water_system, water_box
from ._machine import describe_machine
from ._speed import benchmark_model, write_json

TEMPERATURE_K = 300.0


def _system(method: str, dtype: str, model_file: str, topology) -> openmm.System:
    if method == "classical":
        edge = topology.getPeriodicBoxVectors()[0][0].value_in_unit(unit.nanometer)
        system = classical_water_system(topology, cutoff_nm=min(0.9, 0.45 * edge), ewald_tolerance=1e-6)
        for force in system.getForces():
            if isinstance(force, openmm.NonbondedForce):
                force.setUseSwitchingFunction(True)
                force.setSwitchingDistance(0.8 * force.getCutoffDistance())
        return system
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    system.addForce(create_force(model_file, topology, precision=dtype))
    return system


def run_nve_case(method: str, dtype: str, dt_fs: float, n_molecules: int, model_file: str, duration_ps: float,
                 equilibration_ps: float, sample_every: int, platform: str = "CPU", seed: int = 1,
                 minimize_iterations: int = 100, progress: bool = True) -> Dict:
    """One NVE run; returns its record (with the sampled series for plotting)."""
    from tqdm import tqdm

    topology, positions = water_box(n_molecules, 1.0, seed=seed)
    system = _system(method, dtype, model_file, topology)
    dt = dt_fs * unit.femtoseconds
    integrator = openmm.CompoundIntegrator()
    integrator.addIntegrator(openmm.LangevinMiddleIntegrator(TEMPERATURE_K * unit.kelvin, 1 / unit.picosecond, dt))
    integrator.addIntegrator(openmm.VerletIntegrator(dt))
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    context.setPositions(positions * unit.nanometer)
    if minimize_iterations:
        openmm.LocalEnergyMinimizer.minimize(context, 10.0, minimize_iterations)
    context.setVelocitiesToTemperature(TEMPERATURE_K * unit.kelvin, seed)
    integrator.setCurrentIntegrator(0)
    integrator.step(int(round(equilibration_ps * 1000.0 / dt_fs)))
    integrator.setCurrentIntegrator(1)
    n_steps = int(round(duration_ps * 1000.0 / dt_fs))
    samples = []
    label = f"NVE {method} {dtype} {dt_fs} fs"
    for done in tqdm(range(0, n_steps + 1, sample_every), desc=label, disable=not progress):
        if done:
            integrator.step(sample_every)
        state = context.getState(getEnergy=True)
        samples.append((done * dt_fs / 1000.0, state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole),
                        state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)))
    data = np.array(samples)  # [n_samples, 3]: ps, kinetic, potential (kJ/mol)
    n_atoms = topology.getNumAtoms()
    n_dof = 3 * n_atoms - 3  # no constraints; total momentum is conserved
    if not np.all(np.isfinite(data)):
        raise FloatingPointError(f"{label}: energies became NaN/inf (the simulation blew up)")
    drift = energy_drift(data[:, 0], data[:, 1] + data[:, 2], data[:, 1], n_atoms, n_dof, TEMPERATURE_K)
    return {
        "method": method, "dtype": dtype, "dt_fs": dt_fs, "n_atoms": n_atoms, "duration_ps": duration_ps,
        "drift_kT_per_ns_per_dof": drift.drift_kT_per_ns_per_dof,
        "drift_stderr_kT_per_ns_per_dof": drift.drift_stderr_kT_per_ns_per_dof,
        "drift_meV_per_atom_per_ps": drift.drift_meV_per_atom_per_ps,
        "fluctuation_kJ_per_mol": drift.fluctuation_kj_per_mol,
        "drift_ratio": drift.drift_ratio,
        "series": {"time_ps": data[:, 0].tolist(), "kinetic": data[:, 1].tolist(), "potential": data[:, 2].tolist()},
    }


def run_nve(molecules: List[int], timesteps_fs: List[float], duration_ps: float, equilibration_ps: float = 1.0,
            methods: Optional[List[str]] = None, dtypes: Optional[List[str]] = None, sample_every: int = 4,
            model_file: Optional[str] = None, platform: str = "CPU", out: Optional[str] = None,
            minimize_iterations: int = 100, progress: bool = True) -> Dict:
    """Every (size, method, dtype, dt) combination; JSON written to ``out`` after each run."""
    model_file = model_file or benchmark_model(os.path.join("runs", "bench", "untrained-water.pt"))
    methods = methods or ["equiforce", "classical"]
    dtypes = dtypes or ["float32", "float64"]
    result = {"machine": describe_machine(), "model": model_file, "temperature_K": TEMPERATURE_K,
              "sample_every_steps": sample_every, "records": []}
    for n_molecules in molecules:
        for method in methods:
            for dtype in (dtypes if method != "classical" else ["mixed"]):
                for dt_fs in timesteps_fs:
                    record = run_nve_case(method, dtype, dt_fs, n_molecules, model_file, duration_ps,
                                          equilibration_ps, sample_every, platform,
                                          minimize_iterations=minimize_iterations, progress=progress)
                    result["records"].append(record)
                    if out:
                        write_json(result, out)
    return result


def nve_table(result: Dict) -> str:
    """Markdown table of the NVE records."""
    lines = ["| method | dtype | dt (fs) | atoms | ps | drift (kT/ns/dof) | ± stderr | meV/atom/ps | "
             "fluctuation (kJ/mol) | drift ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["records"]:
        lines.append(f"| {r['method']} | {r['dtype']} | {r['dt_fs']} | {r['n_atoms']} | {r['duration_ps']} | "
                     f"{r['drift_kT_per_ns_per_dof']:+.3g} | {r['drift_stderr_kT_per_ns_per_dof']:.2g} | "
                     f"{r['drift_meV_per_atom_per_ps']:+.3g} | {r['fluctuation_kJ_per_mol']:.3g} | "
                     f"{r['drift_ratio']:.3g} |")
    return "\n".join(lines)
