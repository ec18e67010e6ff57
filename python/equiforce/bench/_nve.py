"""NVE energy-conservation benchmark: a liquid start, NVT equilibration, then Verlet NVE with the total energy
sampled often.

Records: {"method", "dtype", "dt_fs", "n_atoms", "duration_ps", "drift_kT_per_ns_per_dof",
"drift_stderr_kT_per_ns_per_dof", "drift_stderr_method", "block_means_stderr_kT_per_ns_per_dof",
"drift_meV_per_atom_per_ps", "fluctuation_kJ_per_mol", "drift_ratio", "failed", "series"}
(`equiforce.analysis.Drift` says how the standard error is estimated; records of older results without
``drift_stderr_method`` used block means, and `reanalyse_record` brings them up to date from their series).
A run that blows up is recorded with ``failed`` saying when, not dropped: a run stops at
its first sample hotter than ``RUNAWAY_FACTOR`` x 300 K, or when a step fails (OpenMM, or the model refusing
atoms that flew far apart), and carries no drift numbers.

Runs are long on a CPU (20 ps of a 96-atom box at 0.25 fs is 80 000 model evaluations), so with ``work_dir`` each
case saves its state and energy samples every few hundred samples and resumes from them, and ``run_nve`` skips
the cases already in its output file: rerunning the same command continues where it stopped.
"""
import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import openmm
from openmm import unit

from ..analysis import DRIFT_STDERR_METHOD, energy_drift
from ..openmm import create_force
from ..systems import classical_water_system, equilibrate_classically, water_box
from ..units import boltzmann_kj_per_mol
from ._machine import describe_machine, file_sha256
from ._speed import benchmark_model, write_json
from ._threads import torch_threads

#: A sampled temperature above this multiple of the start temperature marks the run as failed (a runaway).
RUNAWAY_FACTOR = 3.0
TEMPERATURE_K = 300.0  # NVT before every NVE run (K)


class NVEInterrupted(Exception):
    """The wall-time limit was reached; the case's state is saved and a rerun continues it."""


@dataclass(frozen=True)
class NVEProtocol:
    """What every case of one benchmark run shares (a resumed run must use the same)."""

    duration_ps: float = 20.0
    equilibration_ps: float = 1.0  # NVT with the method itself, after the classical start
    equilibration_friction_per_ps: float = 10.0  # strong coupling removes the heat of relaxing the classical start
    classical_ps: float = 2.0  # flexible TIP3P-FB from the grid to liquid (0: minimise the grid only)
    sample_every: int = 4  # steps between energy samples
    platform: str = "CPU"
    threads: int = 0  # OpenMM CPU threads (0: OpenMM's default); 1 makes the CPU runs reproducible (to the last bits on an idle machine)
    seed: int = 1  # the box, the classical start, the NVT noise: another seed is an independent replica

    def platform_properties(self) -> Dict[str, str]:
        """CPU: the thread count; CUDA: mixed precision (the integration in double, as an NVE measurement needs;
        the model's own precision is set separately)."""
        if self.platform == "CUDA":
            return {"Precision": "mixed"}
        return {"Threads": str(self.threads)} if self.threads and self.platform == "CPU" else {}


def case_key(method: str, dtype: str, dt_fs: float, n_molecules: int) -> str:
    return f"{method}-{dtype}-{dt_fs:g}fs-{n_molecules}mol"


def case_dir_name(method: str, dtype: str, dt_fs: float, n_molecules: int, seed: int) -> str:
    """The folder in ``work_dir`` that saves one case: the seed is named unless it is the default (1), so the
    replicas of a case started with other seeds never resume one another's state."""
    key = case_key(method, dtype, dt_fs, n_molecules)
    return key if seed == NVEProtocol.seed else f"{key}-seed{seed}"


def nve_system(method: str, dtype: str, model_file: str, topology) -> openmm.System:
    """The system an NVE case runs: ``method`` "classical" (flexible TIP3P-FB, tight Ewald tolerance, switched
    cutoff) or "equiforce" (the model file as a TorchForce in ``dtype``)."""
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


def start_nve(context, integrator, topology, grid_nm: np.ndarray, dt_fs: float, protocol: NVEProtocol) -> None:
    """Liquid start (classical), then NVT with the method under test; leaves the Verlet integrator selected."""
    if protocol.classical_ps > 0:
        positions, velocities = equilibrate_classically(topology, grid_nm, TEMPERATURE_K, protocol.classical_ps,
                                                        seed=protocol.seed, platform=protocol.platform,
                                                        properties=protocol.platform_properties())
        context.setPositions(positions * unit.nanometer)
        context.setVelocities(velocities * unit.nanometer / unit.picosecond)
    else:
        context.setPositions(grid_nm * unit.nanometer)
        openmm.LocalEnergyMinimizer.minimize(context, 10.0, 100)
        context.setVelocitiesToTemperature(TEMPERATURE_K * unit.kelvin, protocol.seed)
    integrator.setCurrentIntegrator(0)
    integrator.step(int(round(protocol.equilibration_ps * 1000.0 / dt_fs)))
    integrator.setCurrentIntegrator(1)


def _save(case_dir: str, context, samples: List) -> None:
    """Atomically save the state (positions, velocities) and the samples taken so far."""
    state = context.getState(getPositions=True, getVelocities=True)
    for name, write in (("state.xml", lambda h: h.write(openmm.XmlSerializer.serialize(state))),
                        ("samples.npy", lambda h: np.save(h, np.array(samples)))):
        path = os.path.join(case_dir, name)
        with open(path + ".tmp", "w" if name.endswith(".xml") else "wb") as handle:
            write(handle)
        os.replace(path + ".tmp", path)


def _check_same_model(case_dir: str, model_sha256: Optional[str]) -> None:
    """A saved run continues only with the model file it started with."""
    path = os.path.join(case_dir, "model_sha256")
    if not os.path.exists(path):
        return  # saved before the hash was kept
    with open(path) as handle:
        started = handle.read().strip()
    if started != (model_sha256 or "classical"):
        raise ValueError(f"{case_dir} was started with the model file of sha256 {started[:12]}…, but the file is now "
                         f"{(model_sha256 or 'classical')[:12]}…: remove that folder to start the run again")


def runaway(time_ps: np.ndarray, kinetic_kj_per_mol: np.ndarray, n_dof: int) -> Tuple[float, Optional[str]]:
    """Highest temperature (K) of the samples, and a failure message if it passed ``RUNAWAY_FACTOR`` × 300 K.

    T = 2 KE / (n_dof k_B). A run that heats that far has left the region the potential was made for (atoms
    falling into an unphysical well, then flying apart); its energy series is no drift measurement.
    """
    temperature = 2.0 * kinetic_kj_per_mol / (n_dof * boltzmann_kj_per_mol(1.0))  # [n_samples] K
    limit = RUNAWAY_FACTOR * TEMPERATURE_K
    if temperature.max() <= limit:
        return float(temperature.max()), None
    first = int(np.argmax(temperature > limit))
    return float(temperature.max()), (f"runaway: {temperature[first]:.0f} K at {time_ps[first]:.3f} ps, "
                                      f"{temperature.max():.0f} K at most (the dynamics left the model's range)")


def run_nve_case(method: str, dtype: str, dt_fs: float, n_molecules: int, model_file: str,
                 protocol: NVEProtocol = NVEProtocol(), work_dir: Optional[str] = None,
                 deadline: Optional[float] = None, save_every_samples: int = 500, progress: bool = True) -> Dict:
    """One NVE run; returns its record (with the sampled series for plotting).

    ``work_dir``: save and resume the case there. ``deadline`` (``time.monotonic()`` seconds): save and raise
    :class:`NVEInterrupted` once passed.
    """
    from tqdm import tqdm

    topology, grid = water_box(n_molecules, 1.0, seed=protocol.seed)
    # the file this run loads (hashed now: a file replaced while the run goes on must not be recorded)
    model_sha256 = file_sha256(model_file) if method != "classical" else None
    dt = dt_fs * unit.femtoseconds
    integrator = openmm.CompoundIntegrator()
    integrator.addIntegrator(openmm.LangevinMiddleIntegrator(
        TEMPERATURE_K * unit.kelvin, protocol.equilibration_friction_per_ps / unit.picosecond, dt))
    integrator.addIntegrator(openmm.VerletIntegrator(dt))
    integrator.getIntegrator(0).setRandomNumberSeed(protocol.seed)
    context = openmm.Context(nve_system(method, dtype, model_file, topology), integrator,
                             openmm.Platform.getPlatformByName(protocol.platform), protocol.platform_properties())
    label = f"NVE {method} {dtype} {dt_fs} fs"
    case_dir = (os.path.join(work_dir, case_dir_name(method, dtype, dt_fs, n_molecules, protocol.seed))
                if work_dir else None)
    samples: List = []
    if case_dir and os.path.exists(os.path.join(case_dir, "samples.npy")):
        _check_same_model(case_dir, model_sha256)
        with open(os.path.join(case_dir, "state.xml")) as handle:
            context.setState(openmm.XmlSerializer.deserialize(handle.read()))
        integrator.setCurrentIntegrator(1)
        samples = np.load(os.path.join(case_dir, "samples.npy")).tolist()
    else:
        if case_dir:
            os.makedirs(case_dir, exist_ok=True)
            with open(os.path.join(case_dir, "model_sha256"), "w") as handle:
                handle.write(f"{model_sha256 or 'classical'}\n")
        start_nve(context, integrator, topology, grid, dt_fs, protocol)

    n_samples = int(round(protocol.duration_ps * 1000.0 / dt_fs)) // protocol.sample_every + 1
    n_atoms = topology.getNumAtoms()
    n_dof = degrees_of_freedom(n_atoms)
    # kinetic energy (kJ/mol) of RUNAWAY_FACTOR x the start temperature: the run stops at the first sample above
    hot_kj_per_mol = 0.5 * n_dof * boltzmann_kj_per_mol(RUNAWAY_FACTOR * TEMPERATURE_K)
    failed = None
    ran_away = any(sample[1] > hot_kj_per_mol for sample in samples)  # a resumed run may already have
    with tqdm(total=n_samples, initial=len(samples), desc=label, disable=not progress) as bar:
        while len(samples) < n_samples and not ran_away:
            if samples:
                try:
                    integrator.step(protocol.sample_every)
                except Exception as error:  # OpenMM or the model refusing the state (atoms flown far apart)
                    failed = (f"the step after {samples[-1][0]:.3f} ps failed (the simulation blew up): "
                              f"{str(error).strip().splitlines()[-1][:200]}")
                    break
            state = context.getState(getEnergy=True)
            sample = (len(samples) * protocol.sample_every * dt_fs / 1000.0,
                      state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole),
                      state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
            if not np.all(np.isfinite(sample)):
                failed = f"non-finite energy at {sample[0]:.3f} ps (the simulation blew up)"
                break
            samples.append(sample)
            bar.update(1)
            ran_away = sample[1] > hot_kj_per_mol
            out_of_time = deadline is not None and time.monotonic() > deadline
            if case_dir and (len(samples) % save_every_samples == 0 or out_of_time or ran_away):
                _save(case_dir, context, samples)
            if out_of_time and len(samples) < n_samples and not ran_away:
                raise NVEInterrupted(f"{label}: {len(samples)}/{n_samples} samples, saved in {case_dir}")
    data = np.array(samples).reshape(-1, 3)  # [n_samples, 3]: ps, kinetic, potential (kJ/mol); may be empty
    if ran_away:  # keep the series up to the first hot sample (an older resumed run may have gone on)
        data = data[:int(np.argmax(data[:, 1] > hot_kj_per_mol)) + 1]
    record = {"method": method, "dtype": dtype, "dt_fs": dt_fs, "n_atoms": n_atoms,
              "duration_ps": protocol.duration_ps, "failed": failed}
    if model_sha256 is not None:  # which file it was (the protocol compares paths; a re-export keeps the path)
        record["model_sha256"] = model_sha256
    if failed is None and len(data):
        record["max_temperature_K"], failed = runaway(data[:, 0], data[:, 1], n_dof)
        record["failed"] = failed
    if len(data) and failed is None:  # a drift is only measured on a run that stayed in its ensemble
        record.update(_drift_fields(data, n_atoms))
    if failed is not None:
        record["completed_ps"] = float(data[-1, 0]) if len(data) else 0.0
    record["series"] = {"time_ps": data[:, 0].tolist(), "kinetic": data[:, 1].tolist(),
                        "potential": data[:, 2].tolist()}
    return record


def degrees_of_freedom(n_atoms: int) -> int:
    """Kinetic degrees of freedom of the benchmark's water boxes: 3N - 3 (no constraints; the total momentum is
    conserved)."""
    return 3 * n_atoms - 3


def _drift_fields(data: np.ndarray, n_atoms: int) -> Dict:
    """The drift numbers of a record from its samples ``data`` ([n_samples, 3]: ps, kinetic, potential kJ/mol)."""
    n_dof = degrees_of_freedom(n_atoms)
    drift = energy_drift(data[:, 0], data[:, 1] + data[:, 2], data[:, 1], n_atoms, n_dof, TEMPERATURE_K)
    return {
        "drift_kT_per_ns_per_dof": drift.drift_kT_per_ns_per_dof,
        "drift_stderr_kT_per_ns_per_dof": drift.drift_stderr_kT_per_ns_per_dof,
        "drift_stderr_method": DRIFT_STDERR_METHOD,
        "block_means_stderr_kT_per_ns_per_dof": drift.block_means_stderr_kT_per_ns_per_dof,
        "drift_meV_per_atom_per_ps": drift.drift_meV_per_atom_per_ps,
        "fluctuation_kJ_per_mol": drift.fluctuation_kj_per_mol,
        "drift_ratio": drift.drift_ratio,
    }


def reanalyse_record(record: Dict) -> Dict:
    """A copy of an NVE record whose drift numbers are recomputed from its saved series with the current
    estimator (`equiforce.analysis.Drift`), so that results from before a change of estimator are judged alike.

    A record that failed, or that already carries the current ``drift_stderr_method``, is returned unchanged
    (copied). A record from before ``drift_stderr_method`` existed used the block-means error: the block-means
    error recomputed here must reproduce its stored ``drift_stderr_kT_per_ns_per_dof`` (and the slope its
    slope), or the series is not the one the record was made from and a ValueError says which record.
    """
    record = dict(record)
    if record.get("failed") or record.get("drift_stderr_method") == DRIFT_STDERR_METHOD:
        return record
    series = record.get("series") or {}
    name = f"{record.get('method')} {record.get('dtype')} {record.get('dt_fs')} fs {record.get('n_atoms')} atoms"
    if not series.get("time_ps"):
        raise ValueError(f"{name}: no energy series saved, so its drift cannot be re-analysed")
    data = np.column_stack([series["time_ps"], series["kinetic"], series["potential"]])  # [n_samples, 3]
    fields = _drift_fields(data, record["n_atoms"])
    if "drift_stderr_method" not in record and "drift_stderr_kT_per_ns_per_dof" in record:
        for stored, recomputed in (("drift_stderr_kT_per_ns_per_dof", "block_means_stderr_kT_per_ns_per_dof"),
                                   ("drift_kT_per_ns_per_dof", "drift_kT_per_ns_per_dof")):
            if not np.isclose(record[stored], fields[recomputed], rtol=1e-6, atol=0.0):
                raise ValueError(f"{name}: its stored {stored} {record[stored]:.6g} is not what its series gives "
                                 f"({fields[recomputed]:.6g}); the series does not belong to the record")
    record.update(fields)
    return record


def run_nve(molecules: List[int], timesteps_fs: List[float], protocol: NVEProtocol = NVEProtocol(),
            methods: Optional[List[str]] = None, dtypes: Optional[List[str]] = None,
            model_file: Optional[str] = None, out: Optional[str] = None, work_dir: Optional[str] = None,
            max_minutes: Optional[float] = None, progress: bool = True) -> Dict:
    """Every (size, method, dtype, dt) combination; JSON written to ``out`` after each run.

    When ``out`` already holds records of the same model and protocol, those cases are skipped (a different
    model or protocol is refused rather than mixed in). With ``max_minutes`` the run stops cleanly (the case
    in progress is saved in ``work_dir``) and the result has ``"complete": false``.

    Several processes may share one ``out`` and ``work_dir`` to use several cores: each claims a case with a
    lock file in ``work_dir`` before running it (a case claimed by another process is skipped), and each write
    merges the records already in ``out``. ``"complete"`` says whether every requested case is recorded.
    ``protocol.threads`` also sets torch's thread count while the runs last.
    """
    model_file = model_file or benchmark_model(os.path.join("runs", "bench", "untrained-water.pt"))
    methods = methods or ["equiforce", "classical"]
    dtypes = dtypes or ["float32", "float64"]
    deadline = None if max_minutes is None else time.monotonic() + 60.0 * max_minutes
    result = {"machine": describe_machine(), "model": model_file, "temperature_K": TEMPERATURE_K,
              "protocol": asdict(protocol), "records": _recorded(out, model_file, protocol), "complete": False}
    cases = [(method, dtype, dt_fs, n_molecules) for n_molecules in molecules for method in methods
             for dtype in (dtypes if method != "classical" else ["mixed"]) for dt_fs in timesteps_fs]
    requested = {case_key(*case) for case in cases}
    try:
        with torch_threads(protocol.threads):
            for case in cases:
                key = case_key(*case)
                if key in _keys(result["records"]):
                    continue
                with _claim(work_dir, case_dir_name(*case, protocol.seed)) as claimed:
                    if not claimed:
                        print(f"{key} is being run by another process; skipped here")
                        continue
                    if key in _keys(_recorded(out, model_file, protocol)):  # finished elsewhere meanwhile
                        continue
                    record = run_nve_case(*case, model_file, protocol, work_dir=work_dir, deadline=deadline,
                                          progress=progress)
                result["records"].append(record)
                if out:
                    _write_merged(result, out, requested)
    except NVEInterrupted as stop:
        print(f"stopped at the time limit: {stop}; rerun the same command to continue")
    if out:
        _write_merged(result, out, requested)
    result["complete"] = requested <= _keys(result["records"])
    return result


def _keys(records: List[Dict]) -> set:
    return {case_key(r["method"], r["dtype"], r["dt_fs"], r["n_atoms"] // 3) for r in records}


def _recorded(out: Optional[str], model_file: str, protocol: NVEProtocol) -> List[Dict]:
    """The records already in ``out`` (none if it does not exist); refuses another model's or protocol's file."""
    if not out or not os.path.exists(out):
        return []
    with open(out) as handle:
        previous = json.load(handle)
    if previous.get("model") != model_file or previous.get("protocol") != asdict(protocol):
        raise ValueError(f"{out} holds runs of another model or protocol ({previous.get('model')}, "
                         f"{previous.get('protocol')}); choose another --out or remove it")
    return previous["records"]


def _write_merged(result: Dict, out: str, requested: set) -> None:
    """Add to ``result`` the records another process wrote to ``out`` meanwhile, then write it (under a lock).

    ``requested``: the case keys this run was asked for; ``result["complete"]`` says whether all are recorded.
    """
    with open(out + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ours = _keys(result["records"])
        others = [r for r in _recorded(out, result["model"], NVEProtocol(**result["protocol"]))
                  if case_key(r["method"], r["dtype"], r["dt_fs"], r["n_atoms"] // 3) not in ours]
        result["records"] = sorted(result["records"] + others,
                                   key=lambda r: (r["n_atoms"], r["method"] == "classical", r["dtype"], r["dt_fs"]))
        result["complete"] = requested <= _keys(result["records"])
        write_json(result, out)


@contextmanager
def _claim(work_dir: Optional[str], key: str) -> Iterator[bool]:
    """Hold an exclusive, non-blocking lock on ``key`` in ``work_dir``; yields whether it was obtained.

    The lock dies with its process, so a killed run never leaves a case claimed.
    """
    if not work_dir:
        yield True
        return
    os.makedirs(work_dir, exist_ok=True)
    with open(os.path.join(work_dir, key + ".lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def nve_table(result: Dict) -> str:
    """Markdown table of the NVE records."""
    lines = ["| method | dtype | dt (fs) | atoms | ps | drift (kT/ns/dof) | ± stderr | meV/atom/ps | "
             "fluctuation (kJ/mol) | drift ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["records"]:
        if r.get("failed"):
            lines.append(f"| {r['method']} | {r['dtype']} | {r['dt_fs']} | {r['n_atoms']} | {r['duration_ps']} | "
                         f"failed: {r['failed']} | | | | |")
            continue
        lines.append(f"| {r['method']} | {r['dtype']} | {r['dt_fs']} | {r['n_atoms']} | {r['duration_ps']} | "
                     f"{r['drift_kT_per_ns_per_dof']:+.3g} | {r['drift_stderr_kT_per_ns_per_dof']:.2g} | "
                     f"{r['drift_meV_per_atom_per_ps']:+.3g} | {r['fluctuation_kJ_per_mol']:.3g} | "
                     f"{r['drift_ratio']:.3g} |")
    return "\n".join(lines)
