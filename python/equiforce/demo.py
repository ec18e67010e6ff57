"""``make demo`` / ``equiforce demo``: a periodic water box in OpenMM, classical start, NVT, then NVE.

It prints what a short run can tell: the speed (ms/step, ns/day), the mean temperature, and how much the
potential and total energy fluctuate. A drift of the total energy is printed only where this run can resolve it
(more than 2 standard errors from zero); otherwise the demo says how large a drift it could have seen and points
to ``equiforce bench nve``, which measures drift over 20 ps per case (docs/benchmarks.md).
"""
import math
import os
import textwrap
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import openmm
from openmm import unit
from tqdm import tqdm

from .analysis import DETECTION_Z, energy_drift
from .pretrained import SHIPPED_MODELS
from .systems import classical_steps, equilibrate_classically, water_box
from .units import ns_per_day

SHIPPED_MODEL = SHIPPED_MODELS["water-gfn2"].path
UNTRAINED_MODEL = os.path.join("runs", "demo", "untrained-water-demo.pt")


def untrained_demo_model(path: str = UNTRAINED_MODEL, seed: int = 0) -> str:
    """Export a randomly initialised H/O model (deterministic for ``seed``) and return its path.

    Its energy scale is small (0.05 eV per atom), so the dynamics are gentle; they are not water's.
    """
    from .export import export_model
    from .nn import EquivariantPotential, ModelConfig

    torch.manual_seed(seed)
    config = ModelConfig(
        elements=["H", "O"], cutoff=5.0, lmax=1, num_features=32, num_layers=3, atomic_energy_scales=[0.05, 0.05]
    )
    export_model(EquivariantPotential(config), path, dtype="float32")
    return path


#: Energy samples the NVE drift fit needs (10 segments of at least 2: `equiforce.analysis.energy_drift`).
MIN_NVE_SAMPLES = 20


@dataclass
class DemoSettings:
    model: Optional[str] = None
    molecules: int = 32
    temperature: float = 300.0  # K
    timestep_fs: float = 0.5
    classical_ps: float = 2.0  # flexible TIP3P-FB equilibration before the model takes over (0: none)
    nvt_steps: int = 1000
    nvt_friction_per_ps: float = 10.0  # strong coupling: the model relaxes the classical structure and heats it
    nve_steps: int = 1000
    sample_every: int = 10  # steps between NVE energy samples (fewer for a short run: the drift fit needs 20)
    platform: str = "CPU"
    precision: Optional[str] = None
    seed: int = 1


#: What ``equiforce bench nve`` resolves, for the pointer the demo prints (docs/benchmarks.md: one 20 ps run at
#: 384 atoms and 0.5 fs, two standard errors).
BENCH_NVE_RESOLUTION = "about 0.01 kT/ns/dof from one 20 ps run"


def _advance(integrator, steps: int, every: int, bar, record=None, context=None) -> float:
    """Advance ``steps`` steps in blocks of ``every``, moving ``bar``; returns the seconds spent in
    ``integrator.step`` only (not in ``record``, called after each block with the steps done so far)."""
    elapsed = 0.0
    done = 0
    while done < steps:
        n = min(every, steps - done)
        start = time.perf_counter()
        integrator.step(n)
        elapsed += time.perf_counter() - start
        done += n
        bar.update(n)
        if record is not None:
            record(context, done)
    return elapsed


def _kelvin_per_kj_per_mol(n_dof: int) -> float:
    """Instantaneous temperature per kJ/mol of kinetic energy: T = 2 KE / (n_dof R)."""
    return 2.0 / (n_dof * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin))


def run_demo(settings: DemoSettings) -> dict:
    """Run the demo, print what it measured (see the module docstring) and return the numbers as a dict."""
    from openmmml import MLPotential

    if settings.nve_steps < MIN_NVE_SAMPLES:
        raise ValueError(f"nve_steps must be at least {MIN_NVE_SAMPLES} (the drift fit needs {MIN_NVE_SAMPLES} "
                         f"energy samples), got {settings.nve_steps}")
    nve_every = min(settings.sample_every, settings.nve_steps // MIN_NVE_SAMPLES)
    model = settings.model
    if model is None:
        if os.path.exists(SHIPPED_MODEL):
            model = SHIPPED_MODEL
        else:
            model = untrained_demo_model()
            print(f"No shipped water model yet: using an UNTRAINED model ({model}); the dynamics are not water's.")
    topology, positions = water_box(settings.molecules, 1.0, seed=settings.seed)
    n_atoms = topology.getNumAtoms()
    system = MLPotential("equiforce", modelPath=model).createSystem(topology, precision=settings.precision)
    dt = settings.timestep_fs * unit.femtoseconds
    nvt = openmm.LangevinMiddleIntegrator(settings.temperature * unit.kelvin,
                                         settings.nvt_friction_per_ps / unit.picosecond, dt)
    nve = openmm.VerletIntegrator(dt)
    integrator = openmm.CompoundIntegrator()
    integrator.addIntegrator(nvt)
    integrator.addIntegrator(nve)
    platform = openmm.Platform.getPlatformByName(settings.platform)
    context = openmm.Context(system, integrator, platform)
    n_classical = classical_steps(settings.classical_ps) if settings.classical_ps > 0 else 0
    nvt_ps = settings.nvt_steps * settings.timestep_fs / 1000.0
    nve_ps = settings.nve_steps * settings.timestep_fs / 1000.0
    print(f"{settings.molecules} water molecules ({n_atoms} atoms), model {model}, platform {settings.platform}, "
          f"dt {settings.timestep_fs} fs")
    phases = ([f"{settings.classical_ps:g} ps classical TIP3P-FB (to start from liquid)"] if n_classical else []) + [
        f"{nvt_ps:g} ps NVT with the model (Langevin, {settings.temperature:g} K)", f"{nve_ps:g} ps NVE (Verlet)"]
    print("Phases: " + ", then ".join(phases))

    total_steps = n_classical + settings.nvt_steps + settings.nve_steps
    names = ("classical start", "NVT", "NVE")[-len(phases):]
    phase = iter(f"{i + 1}/{len(phases)} {name}" for i, name in enumerate(names))
    with tqdm(total=total_steps, desc=next(phase), unit="step", dynamic_ncols=True) as bar:
        if n_classical:
            positions, velocities = equilibrate_classically(topology, positions, settings.temperature,
                                                            settings.classical_ps, seed=settings.seed,
                                                            progress=bar.update)
            context.setPositions(positions * unit.nanometer)
            context.setVelocities(velocities * unit.nanometer / unit.picosecond)
            bar.set_description_str(next(phase))
        else:
            context.setPositions(positions * unit.nanometer)
            context.setVelocitiesToTemperature(settings.temperature * unit.kelvin, settings.seed)

        integrator.setCurrentIntegrator(0)
        _advance(integrator, settings.nvt_steps, settings.sample_every, bar)

        bar.set_description_str(next(phase))
        integrator.setCurrentIntegrator(1)
        samples = []

        def record(ctx, step):
            state = ctx.getState(getEnergy=True)
            samples.append((step * settings.timestep_fs / 1000.0,
                            state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole),
                            state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)))

        record(context, 0)
        seconds = _advance(integrator, settings.nve_steps, nve_every, bar, record, context)

    data = np.array(samples)  # [n_samples, 3]: time (ps), kinetic, potential (kJ/mol)
    kinetic, potential = data[:, 1], data[:, 2]
    total = kinetic + potential
    n_dof = 3 * n_atoms - 3  # CMMotionRemover removes 3
    drift = energy_drift(data[:, 0], total, kinetic, n_atoms, n_dof, settings.temperature)
    ms_per_step = 1000.0 * seconds / settings.nve_steps
    simulated_ns_per_day = ns_per_day(ms_per_step, settings.timestep_fs)
    temperature = kinetic * _kelvin_per_kj_per_mol(n_dof)  # [n_samples] K
    z = abs(drift.drift_kT_per_ns_per_dof) / drift.drift_stderr_kT_per_ns_per_dof
    result = {
        "model": model,
        "n_atoms": n_atoms,
        "platform": settings.platform,
        "timestep_fs": settings.timestep_fs,
        "nve_steps": settings.nve_steps,
        "nve_ps": nve_ps,
        "ms_per_step": ms_per_step,
        "ns_per_day": simulated_ns_per_day,
        "mean_temperature_K": float(temperature.mean()),
        "temperature_std_K": float(temperature.std()),
        # NVE keeps the total energy it starts with, a draw from NVT: for a heat capacity of about n_dof k (kinetic
        # plus as much potential), its mean temperature scatters from run to run by about T / sqrt(n_dof)
        "temperature_spread_K": settings.temperature / math.sqrt(n_dof),
        "potential_std_kj_per_mol": float(potential.std()),
        "total_std_kj_per_mol": float(total.std()),
        "total_over_kinetic_std": float(total.std() / kinetic.std()) if kinetic.std() > 0 else float("inf"),
        "drift_z": float(z),
        "drift_detected": bool(z > DETECTION_Z),
        **drift.as_dict(),
    }
    print(_report(result, settings))
    return result


def _report(result: dict, settings: DemoSettings) -> str:
    """The lines the demo prints: what a short run can be trusted for, and what it cannot tell."""
    drift_error = result["drift_stderr_kT_per_ns_per_dof"]
    if result["drift_detected"]:
        drift = (f"{result['drift_kT_per_ns_per_dof']:+.3g} ± {drift_error:.2g} kT/ns/dof, "
                 f"{result['drift_z']:.1f} standard errors from zero: large enough to show even in this short run. "
                 "Measure it with `equiforce bench nve` (docs/benchmarks.md).")
    else:
        drift = (f"not measurable in {result['nve_ps']:g} ps: only a drift beyond ±{DETECTION_Z * drift_error:.2g} "
                 "kT/ns/dof (2 standard errors) would show here, and none did. `equiforce bench nve` measures "
                 f"drift over 20 ps a case, to {BENCH_NVE_RESOLUTION} (docs/benchmarks.md).")
    rows = [
        ("speed", f"{result['ms_per_step']:.2f} ms/step = {result['ns_per_day']:.3g} ns/day "
                  f"({settings.platform}, {torch.get_num_threads()} torch threads)"),
        ("temperature", f"{result['mean_temperature_K']:.0f} K mean (instantaneous values scatter by "
                        f"{result['temperature_std_K']:.0f} K, std). NVE keeps the energy its start drew at "
                        f"{settings.temperature:g} K, so for {result['n_atoms']} atoms expect "
                        f"{settings.temperature:g} ± {result['temperature_spread_K']:.0f} K from run to run "
                        "(T/√dof)"),
        ("potential energy", f"std {result['potential_std_kj_per_mol']:.3g} kJ/mol (energy moving between potential "
                             "and kinetic)"),
        ("total energy", f"std {result['total_std_kj_per_mol']:.3g} kJ/mol, {result['total_over_kinetic_std']:.2g} of "
                         f"the kinetic energy's (how well Verlet at {settings.timestep_fs:g} fs conserves it, step "
                         "to step)"),
        ("energy drift", drift),
    ]
    lines = [f"\nNVE, {result['nve_ps']:g} ps ({result['nve_steps']} steps of {settings.timestep_fs:g} fs), "
             f"{result['n_atoms']} atoms:"]
    for name, text in rows:
        lines += textwrap.wrap(text, 110, initial_indent=f"  {name:<18}", subsequent_indent=" " * 20,
                               break_on_hyphens=False, break_long_words=False)
    return "\n".join(lines)
