#!/usr/bin/env python
"""Physical validation of the shipped water model in OpenMM (resumable; see README.md in this directory).

Runs (each in its own folder under ``--work``, each resumable on its own):

- ``nvt-300``, ``nvt-400``: the equiforce model, Langevin NVT at 300 K and 400 K for ``--time-ps``. Stability is
  checked on every saved frame: all positions finite and every H within 1.3 Å of its own O (minimum image).
- ``tip3pfb-300``, ``tip3pfb-400``: the same protocol with classical flexible TIP3P-FB (PME): reference RDFs.
- ``npt-300``, ``tip3pfb-npt-300``: the equiforce model and TIP3P-FB at 300 K and 1 bar with a
  ``MonteCarloBarostat`` for ``--npt-time-ps`` (20 ps): density.

Every saved frame is appended to ``traj.dcd`` and ``log.csv`` and the simulation state is written atomically
beside them, so a killed run loses at most one frame interval and a rerun continues where it stopped. The
analysis (always run at the end, on whatever has been simulated) writes O–O and intermolecular O–H radial
distribution functions (mdtraj), the NPT density and the stability checks to
``benchmarks/results/water_validation.json`` and the plots ``water_rdf.png`` and ``water_npt_density.png``.

Usage (from the repository root)::

    python recipes/water/validate.py                         # everything: NVT 100 ps, NPT 20 ps (resumes)
    python recipes/water/validate.py --runs nvt-300 --max-minutes 30 --threads 1
    python recipes/water/validate.py --analyse-only
"""
import argparse
import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch
import openmm
import openmm.app as app
from openmm import unit

from equiforce.analysis import block_standard_error
from equiforce.openmm import create_force
from equiforce.pretrained import SHIPPED_MODELS
from equiforce.systems import equilibrate_classically, tip3pfb_system, water_box, water_mass_dalton
from equiforce.units import ANGSTROM_PER_NM, ns_per_day

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_OH_ANGSTROM = 1.3  # every H within this distance of its own O, else the run counts as broken


@dataclass(frozen=True)
class RunSpec:
    name: str
    engine: str  # "equiforce" or "tip3pfb"
    temperature_K: float
    npt: bool = False


RUNS = {
    spec.name: spec
    for spec in (
        RunSpec("nvt-300", "equiforce", 300.0),
        RunSpec("nvt-400", "equiforce", 400.0),
        RunSpec("tip3pfb-300", "tip3pfb", 300.0),
        RunSpec("tip3pfb-400", "tip3pfb", 400.0),
        RunSpec("npt-300", "equiforce", 300.0, npt=True),
        RunSpec("tip3pfb-npt-300", "tip3pfb", 300.0, npt=True),
    )
}
LOG_FIELDS = ["step", "time_ps", "potential_kj_mol", "kinetic_kj_mol", "temperature_K", "volume_nm3",
              "density_g_cm3", "max_oh_angstrom", "ms_per_step"]


def _write_atomically(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def oh_pairs(topology: app.Topology) -> np.ndarray:
    """[2 n_molecules, 2] (O index, H index) of every O–H bond of the topology."""
    pairs = []
    for bond in topology.bonds():
        a, b = bond[0], bond[1]
        if {a.element.symbol, b.element.symbol} == {"O", "H"}:
            pairs.append((a.index, b.index) if a.element.symbol == "O" else (b.index, a.index))
    return np.array(pairs)


def max_oh_distance_angstrom(positions_nm: np.ndarray, box_nm: np.ndarray, pairs: np.ndarray) -> float:
    """Largest O–H bond length (Å) under the minimum image of a rectangular box; inf for non-finite input."""
    if not np.all(np.isfinite(positions_nm)):
        return math.inf
    delta = positions_nm[pairs[:, 1]] - positions_nm[pairs[:, 0]]  # [n_bonds, 3] nm
    edges = np.diag(box_nm)
    delta -= edges * np.round(delta / edges)
    return float(np.linalg.norm(delta, axis=1).max() * ANGSTROM_PER_NM)


class ValidationRun:
    """One resumable simulation: state, trajectory and log live in ``work_dir``."""

    def __init__(self, spec: RunSpec, args: argparse.Namespace) -> None:
        self.spec = spec
        self.args = args
        self.work_dir = os.path.join(args.work, spec.name)
        os.makedirs(self.work_dir, exist_ok=True)
        self.paths = {k: os.path.join(self.work_dir, f) for k, f in (
            ("state", "state.xml"), ("progress", "progress.json"), ("log", "log.csv"), ("dcd", "traj.dcd"),
            ("pdb", "start.pdb"))}
        self.progress = self._read_progress()
        #: a run keeps the time step it started with (runs from before the key existed used 1 fs)
        self.dt_fs = float(self.progress.get("timestep_fs", 1.0 if self.progress["steps"] else args.timestep_fs))
        self.progress["timestep_fs"] = self.dt_fs

    def _read_progress(self) -> Dict:
        if os.path.exists(self.paths["progress"]):
            with open(self.paths["progress"]) as handle:
                return json.load(handle)
        return {"run": self.spec.name, "steps": 0, "frames": 0, "failed": None, "seconds": 0.0,
                "timestep_fs": self.args.timestep_fs}

    @property
    def frame_steps(self) -> int:
        return max(1, round(self.args.frame_ps * 1000.0 / self.dt_fs))

    @property
    def target_ps(self) -> float:
        return self.args.npt_time_ps if self.spec.npt else self.args.time_ps

    @property
    def target_steps(self) -> int:
        return round(self.target_ps * 1000.0 / self.dt_fs)

    @property
    def finished(self) -> bool:
        return self.progress["failed"] is not None or self.progress["steps"] >= self.target_steps

    def _system(self, topology: app.Topology) -> openmm.System:
        if self.spec.engine == "tip3pfb":  # under a barostat the box shrinks: keep the cutoff well below half
            system = tip3pfb_system(topology, max_cutoff_fraction=0.42 if self.spec.npt else 0.49)
        else:
            system = openmm.System()
            for atom in topology.atoms():
                system.addParticle(atom.element.mass)
            system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
            system.addForce(create_force(self.args.model, topology))
            system.addForce(openmm.CMMotionRemover())
        if self.spec.npt:
            system.addForce(openmm.MonteCarloBarostat(
                self.args.pressure_bar * unit.bar, self.spec.temperature_K * unit.kelvin, 25))
        return system

    def _simulation(self) -> app.Simulation:
        topology, positions = water_box(self.args.molecules, 1.0, seed=self.args.seed)
        integrator = openmm.LangevinMiddleIntegrator(
            self.spec.temperature_K * unit.kelvin, self.args.friction_per_ps / unit.picosecond,
            self.dt_fs * unit.femtoseconds)
        integrator.setRandomNumberSeed(self.args.seed + self.progress["frames"])
        platform = openmm.Platform.getPlatformByName("CPU")
        properties = {"Threads": str(self.args.threads)} if self.args.threads else {}
        simulation = app.Simulation(topology, self._system(topology), integrator, platform, properties)
        if os.path.exists(self.paths["state"]):
            simulation.loadState(self.paths["state"])
            self._truncate_trajectory(topology)
        elif self.spec.engine == "equiforce" and self.args.classical_equilibration_ps > 0:
            start, velocities = equilibrate_classically(
                topology, positions, self.spec.temperature_K, self.args.classical_equilibration_ps,
                seed=self.args.seed, friction_per_ps=self.args.friction_per_ps, properties=properties)
            simulation.context.setPositions(start * unit.nanometer)
            simulation.context.setVelocities(velocities * unit.nanometer / unit.picosecond)
        else:
            simulation.context.setPositions(positions * unit.nanometer)
            openmm.LocalEnergyMinimizer.minimize(simulation.context, 10.0, 500)
            simulation.context.setVelocitiesToTemperature(self.spec.temperature_K * unit.kelvin, self.args.seed)
        if not os.path.exists(self.paths["state"]):
            state = simulation.context.getState(getPositions=True)
            with open(self.paths["pdb"], "w") as handle:
                app.PDBFile.writeFile(topology, state.getPositions(), handle)
            for path in (self.paths["dcd"], self.paths["log"]):
                if os.path.exists(path):
                    os.remove(path)
            with open(self.paths["log"], "w", newline="") as handle:
                csv.writer(handle).writerow(LOG_FIELDS)
        return simulation

    def _truncate_trajectory(self, topology: app.Topology) -> None:
        """Drop frames written after the last saved state (a run killed between the two writes)."""
        import mdtraj

        frames = self.progress["frames"]
        if os.path.exists(self.paths["dcd"]):
            trajectory = mdtraj.load_dcd(self.paths["dcd"], top=self.paths["pdb"])
            if len(trajectory) > frames:
                trajectory[:frames].save_dcd(self.paths["dcd"])
        with open(self.paths["log"]) as handle:
            rows = handle.read().splitlines()
        if len(rows) > frames + 1:
            _write_atomically(self.paths["log"], "\n".join(rows[: frames + 1]) + "\n")

    def run(self, deadline: float) -> None:
        if self.finished:
            return
        from tqdm import tqdm

        simulation = self._simulation()
        topology = simulation.topology
        pairs = oh_pairs(topology)
        mass_g = (topology.getNumResidues() * water_mass_dalton() * unit.gram / unit.mole
                  / unit.AVOGADRO_CONSTANT_NA).value_in_unit(unit.gram)
        n_dof = 3 * topology.getNumAtoms() - 3
        gas_constant = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
        bar = tqdm(total=self.target_steps, initial=self.progress["steps"], unit="step", desc=self.spec.name,
                   dynamic_ncols=True)
        with bar:
            while not self.finished and time.time() < deadline:
                start = time.perf_counter()
                simulation.step(self.frame_steps)
                seconds = time.perf_counter() - start
                state = simulation.context.getState(getPositions=True, getEnergy=True)
                positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
                box = np.array(state.getPeriodicBoxVectors().value_in_unit(unit.nanometer))
                potential = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
                kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
                volume = float(np.linalg.det(box))
                max_oh = max_oh_distance_angstrom(positions, box, pairs)
                self.progress["steps"] += self.frame_steps
                self.progress["frames"] += 1
                self.progress["seconds"] += seconds
                time_ps = self.progress["steps"] * self.dt_fs / 1000.0
                if not (math.isfinite(potential) and math.isfinite(max_oh)):
                    self.progress["failed"] = f"non-finite energy or positions at {time_ps:.2f} ps"
                elif max_oh > MAX_OH_ANGSTROM:
                    self.progress["failed"] = f"an O-H bond reached {max_oh:.2f} Å at {time_ps:.2f} ps"
                row = [self.progress["steps"], time_ps, potential, kinetic, 2 * kinetic / (n_dof * gas_constant),
                       volume, mass_g / (volume * 1e-21), max_oh, 1000.0 * seconds / self.frame_steps]
                with open(self.paths["log"], "a", newline="") as handle:
                    csv.writer(handle).writerow(row)
                dcd_exists = os.path.exists(self.paths["dcd"])
                with open(self.paths["dcd"], "r+b" if dcd_exists else "wb") as handle:
                    dcd = app.DCDFile(handle, topology, self.dt_fs * unit.femtoseconds,
                                      firstStep=self.frame_steps, interval=self.frame_steps, append=dcd_exists)
                    dcd.writeModel(state.getPositions(), periodicBoxVectors=state.getPeriodicBoxVectors())
                simulation.saveState(self.paths["state"] + ".tmp")
                os.replace(self.paths["state"] + ".tmp", self.paths["state"])
                _write_atomically(self.paths["progress"], json.dumps(self.progress, indent=1))
                bar.update(self.frame_steps)
                bar.set_postfix({"T": f"{row[4]:.0f}K", "maxOH": f"{max_oh:.2f}Å", "rho": f"{row[6]:.3f}",
                                 "ms/step": f"{row[8]:.0f}"}, refresh=False)
        if self.progress["failed"]:
            print(f"{self.spec.name}: FAILED: {self.progress['failed']}", file=sys.stderr)

    # ------------------------------------------------------------------------------------------- analysis
    def log(self) -> Optional[Dict[str, np.ndarray]]:
        if not os.path.exists(self.paths["log"]):
            return None
        rows = np.genfromtxt(self.paths["log"], delimiter=",", names=True)
        if rows.size == 0:
            return None
        rows = np.atleast_1d(rows)
        return {name: rows[name] for name in rows.dtype.names}

    def trajectory(self, skip_ps: float):
        import mdtraj

        if not os.path.exists(self.paths["dcd"]):
            return None
        trajectory = mdtraj.load_dcd(self.paths["dcd"], top=self.paths["pdb"])[: self.progress["frames"]]
        first = int(math.ceil(skip_ps / self.args.frame_ps))
        return trajectory[first:] if len(trajectory) > first else None


def density_summary(time_ps: np.ndarray, density: np.ndarray) -> Dict:
    """Mean density with its block standard error when the series has settled, and what it did otherwise.

    Settled (``density_plateau``): the means of the first and second halves differ by less than three
    combined standard errors. A box that keeps expanding or shrinking has no density to report, only its
    start, end and linear slope (g/cm³ per ps).
    """
    half = len(density) // 2
    first, second = density[:half], density[half:]
    difference = abs(second.mean() - first.mean())
    tolerance = 3.0 * math.hypot(block_standard_error(first), block_standard_error(second))
    return {
        "density_g_cm3": float(density.mean()),
        "density_stderr_g_cm3": float(block_standard_error(density)),
        "density_plateau": bool(difference < tolerance),
        "density_first_g_cm3": float(density[0]),
        "density_last_g_cm3": float(density[-1]),
        "density_slope_g_cm3_per_ps": float(np.polyfit(time_ps, density, 1)[0]),
    }


def radial_distribution(trajectory, pair: str, bins: int = 120):
    """(r in Å, g(r)) for "O-O" or intermolecular "O-H" pairs, up to half the smallest box edge."""
    import mdtraj

    top = trajectory.topology
    oxygens = top.select("element O")
    hydrogens = top.select("element H")
    if pair == "O-O":
        pairs = top.select_pairs(oxygens, oxygens)
    else:
        pairs = np.array([(o, h) for o in oxygens for h in hydrogens
                          if top.atom(o).residue.index != top.atom(h).residue.index])
    r_max = 0.5 * float(trajectory.unitcell_lengths.min())
    r, g = mdtraj.compute_rdf(trajectory, pairs, r_range=(0.0, r_max), n_bins=bins)
    return r * ANGSTROM_PER_NM, g


def first_peak(r: np.ndarray, g: np.ndarray, r_min: float, r_max: float) -> Dict[str, float]:
    window = (r >= r_min) & (r <= r_max)
    i = int(np.argmax(np.where(window, g, -np.inf)))
    return {"r_angstrom": float(r[i]), "g": float(g[i])}


def analyse(runs: Dict[str, ValidationRun], args: argparse.Namespace) -> Dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = {
        "model": os.path.relpath(args.model, REPOSITORY) if args.model.startswith(REPOSITORY) else args.model,
        "molecules": args.molecules, "friction_per_ps": args.friction_per_ps,
        "target_time_ps": args.time_ps, "npt_target_time_ps": args.npt_time_ps, "frame_ps": args.frame_ps, "equilibration_ps": args.equilibration_ps,
        "platform": "CPU", "torch_threads": torch.get_num_threads(), "stability_rule":
        f"all positions finite and every H within {MAX_OH_ANGSTROM} Å of its own O on every frame", "runs": {}}
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    styles = {"nvt-300": ("C0", "-"), "nvt-400": ("C3", "-"), "tip3pfb-300": ("C0", "--"),
              "tip3pfb-400": ("C3", "--")}
    for name, run in runs.items():
        run.progress = run._read_progress()  # another process may have run it since this one started
        log = run.log()
        entry = {"engine": run.spec.engine, "temperature_K": run.spec.temperature_K, "npt": run.spec.npt,
                 "timestep_fs": run.dt_fs, "simulated_ps": run.progress["steps"] * run.dt_fs / 1000.0,
                 "complete": run.progress["steps"] >= run.target_steps, "failed": run.progress["failed"]}
        if log is not None and len(log["step"]):
            ms = float(np.median(log["ms_per_step"]))
            entry.update({"max_oh_angstrom": float(np.max(log["max_oh_angstrom"])),
                          "mean_temperature_K": float(np.mean(log["temperature_K"])),
                          "median_ms_per_step": ms, "ns_per_day": ns_per_day(ms, entry["timestep_fs"])})
            stable = log["time_ps"] > args.equilibration_ps
            if run.spec.npt and stable.sum() >= 20:
                density = log["density_g_cm3"][stable]
                entry.update(density_summary(log["time_ps"][stable], density))
        trajectory = run.trajectory(args.equilibration_ps) if not run.spec.npt else None
        if trajectory is not None and len(trajectory) >= 2:
            entry["rdf_frames"] = len(trajectory)
            for axis, pair, peak in ((axes[0], "O-O", (2.4, 3.3)), (axes[1], "O-H", (1.5, 2.3))):
                r, g = radial_distribution(trajectory, pair)
                entry[f"g_{pair.replace('-', '')}_first_peak"] = first_peak(r, g, *peak)
                colour, line = styles[name]
                label = f"{'equiforce' if run.spec.engine == 'equiforce' else 'TIP3P-FB'} {run.spec.temperature_K:.0f} K"
                axis.plot(r, g, color=colour, linestyle=line, label=f"{label} ({entry['simulated_ps']:.0f} ps)")
        result["runs"][name] = entry
    for axis, pair in zip(axes, ("O–O", "O–H (intermolecular)")):
        axis.set_xlabel("r (Å)")
        axis.set_ylabel("g(r)")
        axis.set_title(f"{pair}, {args.molecules} molecules")
        axis.legend(fontsize=8)
    figure.suptitle("Liquid water: equiforce water-gfn2 vs flexible TIP3P-FB (NVT, OpenMM)")
    figure.tight_layout()
    os.makedirs(args.results, exist_ok=True)
    figure.savefig(os.path.join(args.results, "water_rdf.png"), dpi=120)
    plt.close(figure)

    npt_runs = [(name, "equiforce" if runs[name].spec.engine == "equiforce" else "TIP3P-FB", colour)
                for name, colour in (("npt-300", "C3"), ("tip3pfb-npt-300", "C0"))]
    logs = {name: runs[name].log() for name, _, _ in npt_runs}
    if any(log is not None and len(log["step"]) for log in logs.values()):
        figure, axis = plt.subplots(figsize=(6, 3.5))
        for name, label, colour in npt_runs:
            log, entry = logs[name], result["runs"][name]
            if log is None or not len(log["step"]):
                continue
            if entry.get("density_plateau"):
                label += f": {entry['density_g_cm3']:.3f} ± {entry['density_stderr_g_cm3']:.3f} g/cm³"
            elif "density_first_g_cm3" in entry:
                label += (f": no plateau, {entry['density_first_g_cm3']:.2f} → {entry['density_last_g_cm3']:.2f} "
                          f"g/cm³ ({entry['density_slope_g_cm3_per_ps']:+.3f} per ps)")
            axis.plot(log["time_ps"], log["density_g_cm3"], lw=0.8, color=colour, label=label)
            if entry.get("density_plateau"):
                axis.axhline(entry["density_g_cm3"], color=colour, ls="--", lw=0.8)
        axis.axvline(args.equilibration_ps, color="grey", ls=":", label="equilibration (discarded)")
        axis.set_xlabel("time (ps)")
        axis.set_ylabel("density (g/cm³)")
        axis.set_title(f"NPT 300 K, {args.pressure_bar:g} bar, MonteCarloBarostat, {args.molecules} molecules")
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(os.path.join(args.results, "water_npt_density.png"), dpi=120)
        plt.close(figure)
    path = os.path.join(args.results, "water_validation.json")
    _write_atomically(path, json.dumps(result, indent=1) + "\n")
    return result


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=SHIPPED_MODELS["water-gfn2"].path, help="exported model file")
    parser.add_argument("--runs", nargs="+", choices=sorted(RUNS), default=list(RUNS))
    parser.add_argument("--time-ps", type=float, default=100.0, help="length of every NVT run (ps)")
    parser.add_argument("--npt-time-ps", type=float, default=20.0, help="length of the NPT (density) runs (ps)")
    parser.add_argument("--timestep-fs", type=float, default=0.5)
    parser.add_argument("--classical-equilibration-ps", type=float, default=5.0,
                        help="equiforce runs start from flexible TIP3P-FB equilibrated this long (0: minimise the grid)")
    parser.add_argument("--friction-per-ps", type=float, default=1.0)
    parser.add_argument("--frame-ps", type=float, default=0.1, help="interval of saved frames and checks (ps)")
    parser.add_argument("--equilibration-ps", type=float, default=5.0, help="discarded before RDFs and density")
    parser.add_argument("--molecules", type=int, default=32)
    parser.add_argument("--pressure-bar", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch and OpenMM CPU threads (0: default)")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop cleanly after this wall time")
    parser.add_argument("--work", default=os.path.join(REPOSITORY, "runs", "validate"))
    parser.add_argument("--results", default=os.path.join(REPOSITORY, "benchmarks", "results"))
    parser.add_argument("--analyse-only", action="store_true")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    deadline = time.time() + 60.0 * args.max_minutes if args.max_minutes else math.inf
    runs = {name: ValidationRun(RUNS[name], args) for name in RUNS}
    if not args.analyse_only:
        for name in args.runs:
            runs[name].run(deadline)
    result = analyse(runs, args)
    for name, entry in result["runs"].items():
        print(f"{name}: {entry['simulated_ps']:.1f}/{runs[name].target_ps:g} ps, failed: {entry['failed']}, "
              f"max O-H {entry.get('max_oh_angstrom', float('nan')):.2f} Å, "
              f"{entry.get('median_ms_per_step', float('nan')):.1f} ms/step"
              + (f", density {entry['density_g_cm3']:.3f} g/cm3" if entry.get("density_plateau") else "")
              + (f", density drifting {entry['density_slope_g_cm3_per_ps']:+.3f} g/cm3/ps (no plateau)"
                 if "density_plateau" in entry and not entry["density_plateau"] else ""))


if __name__ == "__main__":
    main()
