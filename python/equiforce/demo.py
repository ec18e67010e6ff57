"""``make demo`` / ``equiforce demo``: NVT equilibration then NVE of a periodic water box in OpenMM."""
import os
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import openmm
from openmm import unit
from tqdm import tqdm

from .analysis import energy_drift
from .pretrained import SHIPPED_MODELS
from .systems import equilibrate_classically, water_box
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


def _run_blocks(integrator, context, steps: int, every: int, label: str, record=None) -> float:
    """Advance ``steps`` steps in blocks of ``every``; returns seconds spent in integrator.step only."""
    elapsed = 0.0
    with tqdm(total=steps, desc=label, unit="step", leave=True) as bar:
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


def run_demo(settings: DemoSettings) -> dict:
    """Run the demo and print ms/step, ns/day and the NVE energy drift; returns the numbers as a dict."""
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
    if settings.classical_ps > 0:
        print(f"Starting from liquid: {settings.classical_ps} ps of flexible TIP3P-FB at {settings.temperature} K")
        positions, velocities = equilibrate_classically(topology, positions, settings.temperature,
                                                        settings.classical_ps, seed=settings.seed)
        context.setPositions(positions * unit.nanometer)
        context.setVelocities(velocities * unit.nanometer / unit.picosecond)
    else:
        context.setPositions(positions * unit.nanometer)
        context.setVelocitiesToTemperature(settings.temperature * unit.kelvin, settings.seed)
    print(f"{settings.molecules} water molecules ({n_atoms} atoms), model {model}, platform {settings.platform}, "
          f"dt {settings.timestep_fs} fs")

    integrator.setCurrentIntegrator(0)
    _run_blocks(integrator, context, settings.nvt_steps, settings.sample_every, "NVT equilibration")

    integrator.setCurrentIntegrator(1)
    samples = []

    def record(ctx, step):
        state = ctx.getState(getEnergy=True)
        samples.append((step * settings.timestep_fs / 1000.0,
                        state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole),
                        state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)))

    record(context, 0)
    seconds = _run_blocks(integrator, context, settings.nve_steps, nve_every, "NVE", record)
    data = np.array(samples)  # [n_samples, 3]: time (ps), kinetic, potential (kJ/mol)
    n_dof = 3 * n_atoms - 3  # CMMotionRemover removes 3
    drift = energy_drift(data[:, 0], data[:, 1] + data[:, 2], data[:, 1], n_atoms, n_dof, settings.temperature)
    ms_per_step = 1000.0 * seconds / settings.nve_steps
    simulated_ns_per_day = ns_per_day(ms_per_step, settings.timestep_fs)
    mean_temperature = 2 * data[:, 1].mean() / (n_dof * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(
        unit.kilojoule_per_mole / unit.kelvin))
    result = {
        "model": model,
        "n_atoms": n_atoms,
        "platform": settings.platform,
        "timestep_fs": settings.timestep_fs,
        "nve_steps": settings.nve_steps,
        "ms_per_step": ms_per_step,
        "ns_per_day": simulated_ns_per_day,
        "mean_temperature_K": float(mean_temperature),
        **drift.as_dict(),
    }
    print(f"\nNVE: {ms_per_step:.2f} ms/step, {simulated_ns_per_day:.3f} ns/day at {settings.timestep_fs} fs, "
          f"<T> = {mean_temperature:.0f} K")
    print(f"Total-energy drift: {drift.drift_kT_per_ns_per_dof:+.3g} ± {drift.drift_stderr_kT_per_ns_per_dof:.2g} "
          f"kT/ns/dof ({drift.drift_meV_per_atom_per_ps:+.3g} meV/atom/ps), fluctuation "
          f"{drift.fluctuation_kj_per_mol:.3g} kJ/mol, drift ratio {drift.drift_ratio:.3g}")
    return result
