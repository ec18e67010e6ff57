"""``equiforce sample``: Langevin MD in OpenMM that writes candidate frames for labelling.

The sampler runs either the user's current model (an exported equiforce file, a committee file included) or,
to start, a classical OpenMM force field. It writes a frame every ``every`` steps and checkpoints with each
frame, so a rerun of the same command continues where it stopped.
"""
import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import openmm
from openmm import app, unit

from .._files import write_atomic, write_json
from ..hashing import file_sha256
from ._frames import append_frame, keep_frames, state_to_atoms, topology_symbols
from ._select import DISAGREEMENT_KEY


@dataclasses.dataclass
class SampleSettings:
    """One sampling run. Units: K, fs, ps⁻¹.

    Parameters
    ----------
    temperature_K : Langevin thermostat temperature.
    timestep_fs : integration time step.
    frames : candidate frames to write.
    every : steps between frames (they are correlated below the system's decorrelation time).
    equilibration_steps : steps before the first frame.
    friction_per_ps : Langevin friction.
    seed : velocities and Langevin noise (a run is reproducible on one platform and thread count).
    minimise : minimise the start first (default for a classical force field; an immature model's minimum can
        lie far from the data, so it is off for models unless asked).
    platform : OpenMM platform name ("CPU", "Reference", "CUDA").
    """

    temperature_K: float = 300.0
    timestep_fs: float = 0.5
    frames: int = 50
    every: int = 100
    equilibration_steps: int = 1000
    friction_per_ps: float = 1.0
    seed: int = 0
    minimise: Optional[bool] = None
    platform: str = "CPU"

    def __post_init__(self) -> None:
        if self.temperature_K <= 0 or self.timestep_fs <= 0:
            raise ValueError(f"temperature_K and timestep_fs must be positive, got {self.temperature_K} K and "
                             f"{self.timestep_fs} fs")
        if self.frames < 1 or self.every < 1 or self.equilibration_steps < 0:
            raise ValueError(f"frames and every must be >= 1 and equilibration_steps >= 0, got {self.frames}, "
                             f"{self.every}, {self.equilibration_steps}")


def read_start(structure: str) -> app.PDBFile:
    """The start structure: a PDB file (its CRYST1 record gives the periodic box)."""
    if not structure.lower().endswith((".pdb", ".pdbx", ".cif")):
        raise ValueError(f"{structure}: the start structure must be a PDB or PDBx/mmCIF file (topology and box)")
    if not os.path.exists(structure):
        raise FileNotFoundError(f"start structure {structure} does not exist")
    return app.PDBxFile(structure) if structure.lower().endswith((".pdbx", ".cif")) else app.PDBFile(structure)


def classical_system(topology: app.Topology, forcefield: Sequence[str]) -> openmm.System:
    """A flexible classical system (no constraints, flexible water) from OpenMM force-field files: PME with a
    real-space cutoff of 0.9 nm or 0.49 of the shortest box edge when periodic, no cutoff otherwise."""
    field = app.ForceField(*forcefield)
    box = topology.getPeriodicBoxVectors()
    if box is None:
        return field.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False)
    edge_nm = min(box[i][i].value_in_unit(unit.nanometer) for i in range(3))
    return field.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=min(0.9, 0.49 * edge_nm) * unit.nanometer,
                              constraints=None, rigidWater=False)


def model_system(topology: app.Topology, model_file: str) -> openmm.System:
    """The whole system under an exported equiforce model (through openmm-ml's ``MLPotential("equiforce")``)."""
    from openmmml import MLPotential

    from .. import openmm as _registers_potentials  # noqa: F401  (loads openmm-torch's plugins in any import order)

    return MLPotential("equiforce", modelPath=model_file).createSystem(topology)


def _source(model: Optional[str], forcefield: Optional[Sequence[str]]) -> Dict[str, object]:
    if (model is None) == (not forcefield):
        raise ValueError("give either a model file or classical force-field files to sample with (not both)")
    if model is not None:
        return {"model": os.path.abspath(model), "model_sha256": file_sha256(model)}
    return {"forcefield": list(forcefield)}


def sample(structure: str, output: str, settings: SampleSettings, model: Optional[str] = None,
           forcefield: Optional[Sequence[str]] = None, progress: bool = True, committee: Optional[str] = None,
           stop_spread: Optional[float] = None, start_frame: Optional[str] = None) -> Dict[str, object]:
    """Run Langevin NVT from ``structure`` and append ``settings.frames`` frames (Å, no labels) to ``output``.

    With a ``committee`` file, each frame also gets the committee's largest per-atom force spread (eV/Å) in
    ``info[DISAGREEMENT_KEY]`` (``"committee_force_std"``, what the selection ranks by), and with ``stop_spread`` (eV/Å) the run stops after the first frame whose
    spread exceeds it: the MD has left what the models know, and what follows would be further from the data
    still (the record says where it stopped; a rerun does not continue it).

    ``start_frame``: an extxyz file whose last frame (Å, same atoms in the same order) replaces the structure's
    positions, e.g. a liquid frame of the training data: a model should start inside its data, not from a built
    structure that only a classical force field's minimiser can repair.

    A checkpoint (``output + ".chk"``) and a record of the settings (``output + ".sample.json"``) are written
    with every frame; a rerun with the same arguments continues after the last frame written, and a rerun with
    other arguments is refused (move the output away to start again). Each frame's ``info`` holds
    ``sample_step``, ``sample_time_ps``, ``sample_temperature_K`` and ``sample_seed``.
    Returns the record: settings, source, frames written, and the mean temperature of the production part.
    """
    from tqdm.auto import tqdm

    pdb = read_start(structure)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    topology = pdb.topology
    periodic = topology.getPeriodicBoxVectors() is not None
    symbols = topology_symbols(topology)
    record_path, checkpoint_path = output + ".sample.json", output + ".chk"
    record = {"structure": os.path.abspath(structure), "structure_sha256": file_sha256(structure),
              "settings": dataclasses.asdict(settings), **_source(model, forcefield), "frames_written": 0}
    if start_frame is not None:
        record.update(start_frame=os.path.abspath(start_frame), start_frame_sha256=file_sha256(start_frame))
    if committee is not None:
        record.update(committee=os.path.abspath(committee), committee_sha256=file_sha256(committee),
                      stop_spread=stop_spread)
    elif stop_spread is not None:
        raise ValueError("stop_spread needs a committee file to measure the spread with")
    system = model_system(topology, model) if model is not None else classical_system(topology, forcefield)
    integrator = openmm.LangevinMiddleIntegrator(settings.temperature_K * unit.kelvin,
                                                 settings.friction_per_ps / unit.picosecond,
                                                 settings.timestep_fs * unit.femtoseconds)
    integrator.setRandomNumberSeed(settings.seed)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(settings.platform))
    done = _resume(record, record_path, checkpoint_path, output, context)
    if done is not None and record.get("stopped"):
        return record
    if done is None:
        context.setPositions(pdb.positions if start_frame is None else _last_positions(start_frame, symbols))
        if settings.minimise if settings.minimise is not None else model is None:
            openmm.LocalEnergyMinimizer.minimize(context, 10.0, 1000)
        context.setVelocitiesToTemperature(settings.temperature_K * unit.kelvin, settings.seed)
        integrator.step(settings.equilibration_steps)
        done = 0
        if os.path.exists(output):
            os.remove(output)
    if committee is not None:
        from ..committee import CommitteeEvaluator, force_disagreement

        judge = CommitteeEvaluator(committee)  # loaded once, not per frame
    n_dof = 3 * system.getNumParticles() - system.getNumConstraints() - 3
    temperatures = []
    bar = tqdm(total=settings.frames, initial=done, desc=f"sample {os.path.basename(output)}", unit="frame",
               disable=not progress)
    for k in range(done, settings.frames):
        integrator.step(settings.every)
        state = context.getState(getPositions=True, getEnergy=True, enforcePeriodicBox=periodic)
        kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        temperature = 2.0 * kinetic / (n_dof * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(
            unit.kilojoule_per_mole / unit.kelvin))
        if not np.isfinite(temperature) or not np.isfinite(state.getPotentialEnergy()._value):
            raise RuntimeError(f"sampling {output}: the simulation blew up before frame {k} (step "
                               f"{settings.equilibration_steps + (k + 1) * settings.every}); frames up to {k} are kept")
        temperatures.append(float(temperature))
        atoms = state_to_atoms(symbols, state, periodic)
        step = settings.equilibration_steps + (k + 1) * settings.every
        atoms.info.update({"sample_step": step, "sample_time_ps": step * settings.timestep_fs / 1000.0,
                           "sample_temperature_K": settings.temperature_K, "sample_seed": settings.seed})
        spread = None
        if committee is not None:
            spread = float(force_disagreement(judge, [atoms])[0])
            atoms.info[DISAGREEMENT_KEY] = spread
        append_frame(output, atoms)
        write_atomic(checkpoint_path, context.createCheckpoint())
        record["frames_written"] = k + 1
        if stop_spread is not None and spread is not None and not spread <= stop_spread:
            record["stopped"] = (f"frame {k} (step {step}): committee force spread {spread:.3g} eV/Å above "
                                 f"{stop_spread:g}")
        write_json(record_path, record)
        bar.update(1)
        if record.get("stopped"):
            break
    bar.close()
    record["mean_temperature_K"] = float(np.mean(temperatures)) if temperatures else None
    return record


def _resume(record: Dict, record_path: str, checkpoint_path: str, output: str, context: openmm.Context) -> Optional[int]:
    """Frames already written by an identical earlier run (its checkpoint loaded into ``context``), or None."""
    if not os.path.exists(record_path):
        return None
    with open(record_path) as handle:
        earlier = json.load(handle)
    progress_keys = ("frames_written", "stopped")
    same = {k: v for k, v in earlier.items() if k not in progress_keys} == \
        {k: v for k, v in record.items() if k not in progress_keys}
    if not same:
        differing = sorted(k for k in set(earlier) | set(record)
                           if k not in progress_keys and earlier.get(k) != record.get(k))
        raise ValueError(f"{output} was sampled with other settings ({', '.join(differing)} differ; see "
                         f"{record_path}): move it away or choose another output")
    done = int(earlier["frames_written"])
    if done == 0 or not os.path.exists(checkpoint_path):
        return None
    with open(checkpoint_path, "rb") as handle:
        context.loadCheckpoint(handle.read())
    keep_frames(output, done)
    record["frames_written"] = done
    if earlier.get("stopped"):
        record["stopped"] = earlier["stopped"]
    return done



def _last_positions(path: str, symbols: List[str]):
    """The last frame of ``path`` as OpenMM positions, checked against the topology's elements."""
    import ase.io

    atoms = ase.io.read(path, index=-1)
    if atoms.get_chemical_symbols() != symbols:
        raise ValueError(f"the last frame of {path} ({len(atoms)} atoms) does not hold the start structure's "
                         f"{len(symbols)} atoms in the same order")
    return atoms.positions * unit.angstrom
