"""ML/MM example: alanine dipeptide (ACE-ALA-NME) described by SevenNet-0, in TIP3P water described by Amber14.

What it does, nothing downloaded at run time:

1. imports SevenNet-0 (from the installed ``sevenn``) into one equiforce model file, unless the file exists;
2. builds the dipeptide's heavy atoms from standard peptide geometry (bond lengths, angles and torsions, here),
   lets OpenMM's ``Modeller`` add the hydrogens and a cubic box of TIP3P water (at least 1.0 nm of water
   between the dipeptide and every face of the box; neutral: the dipeptide carries no charge, no ions);
3. creates the Amber14 system (PME, 1.0 nm cutoff, HBonds constraints, rigid water) and hands the 22 dipeptide
   atoms to the ML potential with ``MLPotential("equiforce", modelPath=...).createMixedSystem``. openmm-ml's
   default ``removeConstraints=True`` removes the constraints between ML atoms (the dipeptide's X-H bonds), so
   those bonds vibrate freely: the time step is 1 fs. Water stays rigid. The ML force is in its own force group
   (1) so its energy can be read separately;
4. minimises, thermalises for 0.5 ps with a strong thermostat (10/ps; untimed, not recorded), then runs Langevin
   NVT (300 K, 1/ps) for ``--ps`` picoseconds after a short untimed warm-up, recording the potential energy
   (total and ML part) and the temperature every ``--steps-between-reports`` steps and timing the MD steps;
5. writes a JSON result, a two-panel plot and the final structure (PDB).

Run from the repository root::

    .venv/bin/python examples/alanine_dipeptide_sevennet.py            # 2 ps, one thread
    .venv/bin/python examples/alanine_dipeptide_sevennet.py --ps 1 --steps-between-reports 50

The building functions (``build_solvated``, ``build_mixed_system``, ``make_simulation``) are importable; the
test ``tests/examples/test_alanine_dipeptide_example.py`` uses them.
"""
import argparse
import io
import json
import math
import os
import random
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch  # before openmmtorch / openmmml

import openmm
import openmm.app as app
from openmm import unit

DEFAULT_MODEL = os.path.join("runs", "examples", "sevennet-0.pt")
DEFAULT_OUT = os.path.join("benchmarks", "results", "alanine_dipeptide_sevennet.json")
DEFAULT_FINAL_PDB = os.path.join("runs", "examples", "alanine_dipeptide_sevennet_final.pdb")
DIPEPTIDE_RESIDUES = ("ACE", "ALA", "NME")
ML_FORCE_GROUP = 1


# --------------------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------------------

def ensure_model(path: str = DEFAULT_MODEL, progress: bool = True) -> str:
    """The SevenNet-0 equiforce file at ``path``; imported from the installed ``sevenn`` if it is not there."""
    if not os.path.exists(path):
        from equiforce.imports import import_sevennet

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        import_sevennet("7net-0", path, progress=progress)
    elif progress:
        print(f"model: {path} (already imported)", flush=True)
    return path


# --------------------------------------------------------------------------------------------------------------
# Structure: ACE-ALA-NME heavy atoms from internal coordinates
# --------------------------------------------------------------------------------------------------------------

def place_atom(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle_deg: float,
               torsion_deg: float) -> np.ndarray:
    """Position of atom d with |cd| = bond, angle b-c-d = angle_deg and torsion a-b-c-d = torsion_deg."""
    angle = math.radians(angle_deg)
    torsion = math.radians(torsion_deg)
    bc = c - b
    bc /= np.linalg.norm(bc)
    normal = np.cross(b - a, bc)
    normal /= np.linalg.norm(normal)
    in_plane = np.cross(normal, bc)
    # d in the local frame (bc, in_plane, normal): the bond makes (pi - angle) with bc.
    local = bond * np.array([-math.cos(angle),
                             math.sin(angle) * math.cos(torsion),
                             math.sin(angle) * math.sin(torsion)])
    return c + local[0] * bc + local[1] * in_plane + local[2] * normal


def dipeptide_heavy_atoms(phi: float = -80.0, psi: float = 80.0, omega: float = 180.0
                          ) -> List[Tuple[str, str, str, np.ndarray]]:
    """(residue, atom name, element, position Å) of ACE-ALA-NME's 10 heavy atoms; phi/psi in degrees
    (default near the C7eq minimum), trans peptide bonds, L-alanine. Bond lengths and angles: standard
    Engh-Huber-like peptide values."""
    # ACE methyl carbon, ACE carbonyl carbon and ALA N: a reference frame.
    ch3 = np.array([0.0, 0.0, 0.0])
    c0 = np.array([1.52, 0.0, 0.0])
    n1 = place_atom(np.array([0.0, 1.0, 0.0]), ch3, c0, 1.33, 116.2, 180.0)
    o0 = place_atom(n1, ch3, c0, 1.23, 120.5, 180.0)  # trans to N about CH3-C: the carbonyl O
    ca = place_atom(ch3, c0, n1, 1.46, 121.7, omega)
    c1 = place_atom(c0, n1, ca, 1.52, 111.0, phi)
    cb = place_atom(c0, n1, ca, 1.53, 110.5, phi - 120.0)  # L-alanine (S centre): see alanine_chirality
    n2 = place_atom(n1, ca, c1, 1.33, 116.2, psi)
    o1 = place_atom(n1, ca, c1, 1.23, 120.5, psi + 180.0)
    cn = place_atom(ca, c1, n2, 1.46, 121.7, omega)
    return [
        ("ACE", "CH3", "C", ch3), ("ACE", "C", "C", c0), ("ACE", "O", "O", o0),
        ("ALA", "N", "N", n1), ("ALA", "CA", "C", ca), ("ALA", "C", "C", c1), ("ALA", "O", "O", o1),
        ("ALA", "CB", "C", cb),
        ("NME", "N", "N", n2), ("NME", "C", "C", cn),
    ]


def alanine_chirality(positions_angstrom: Dict[str, np.ndarray]) -> float:
    """Signed volume (N-CA).((C-CA)x(CB-CA)) of the alanine centre, Å³: positive for L (S) alanine."""
    ca = positions_angstrom["CA"]
    return float(np.dot(positions_angstrom["N"] - ca,
                        np.cross(positions_angstrom["C"] - ca, positions_angstrom["CB"] - ca)))


def dipeptide_pdb_text(phi: float = -80.0, psi: float = 80.0) -> str:
    """A PDB (heavy atoms only) of ACE-ALA-NME built by :func:`dipeptide_heavy_atoms`."""
    lines = []
    residue_numbers = {name: k + 1 for k, name in enumerate(DIPEPTIDE_RESIDUES)}
    for serial, (residue, name, element, xyz) in enumerate(dipeptide_heavy_atoms(phi, psi), start=1):
        atom_field = f" {name:<3s}" if len(name) < 4 else name
        lines.append(f"ATOM  {serial:5d} {atom_field:4s} {residue:3s} A{residue_numbers[residue]:4d}    "
                     f"{xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}  1.00  0.00          {element:>2s}")
    lines += ["TER", "END"]
    return "\n".join(lines) + "\n"


def build_solvated(padding_nm: float = 1.0, phi: float = -80.0, psi: float = 80.0, cutoff_nm: float = 1.0,
                   seed: int = 2024, threads: int = 1) -> Tuple[app.Topology, unit.Quantity, app.ForceField]:
    """Alanine dipeptide with hydrogens in a cubic box of TIP3P water (Amber14): (topology, positions, forcefield).

    The box edge is the diameter of a sphere around the dipeptide (centred on its centroid) plus twice
    ``padding_nm``, so at least ``padding_nm`` of water separates the dipeptide from every box face; never less
    than twice the cutoff plus 0.2 nm. (OpenMM's own ``padding=`` argument means the solute-to-image distance and
    gives 2 x padding for a solute this small, hence the explicit box size.)

    ``Modeller.addHydrogens`` starts the hydrogens at random offsets (Python's ``random``) before relaxing them, so
    ``seed`` seeds it (the global generator's state is restored afterwards): the same seed gives the same system.
    Its relaxation runs on the CPU platform with ``threads`` threads.
    """
    pdb = app.PDBFile(io.StringIO(dipeptide_pdb_text(phi, psi)))
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    modeller = app.Modeller(pdb.topology, pdb.positions)
    platform, _ = cpu_platform(threads)
    saved = random.getstate()
    random.seed(seed)
    try:
        modeller.addHydrogens(forcefield, platform=platform)
    finally:
        random.setstate(saved)
    n_solute = modeller.topology.getNumAtoms()
    if n_solute != 22:
        raise RuntimeError(f"alanine dipeptide should have 22 atoms with hydrogens, got {n_solute}")
    xyz = np.asarray(modeller.positions.value_in_unit(unit.nanometer))
    diameter = 2.0 * float(np.linalg.norm(xyz - xyz.mean(axis=0), axis=1).max())
    edge = max(diameter + 2.0 * padding_nm, 2.0 * cutoff_nm + 0.2)
    modeller.addSolvent(forcefield, model="tip3p", boxSize=openmm.Vec3(edge, edge, edge) * unit.nanometer,
                        neutralize=True)
    return modeller.topology, modeller.positions, forcefield


def dipeptide_atoms(topology: app.Topology) -> List[int]:
    """Indices of the atoms of the ACE, ALA and NME residues."""
    return [atom.index for atom in topology.atoms() if atom.residue.name in DIPEPTIDE_RESIDUES]


def count_waters(topology: app.Topology) -> int:
    return sum(1 for residue in topology.residues() if residue.name == "HOH")


# --------------------------------------------------------------------------------------------------------------
# System and simulation
# --------------------------------------------------------------------------------------------------------------

def build_mixed_system(topology: app.Topology, forcefield: app.ForceField, model_path: str,
                       ml_force_group: int = ML_FORCE_GROUP) -> Tuple[openmm.System, List[int]]:
    """Amber14/TIP3P system (PME, 1 nm cutoff, HBonds, rigid water) with the dipeptide computed by the model.

    openmm-ml's mechanical embedding: the model's TorchForce (in ``ml_force_group``) replaces the MM bonded and
    nonbonded terms within the dipeptide; dipeptide-water interactions stay Amber14's. ``removeConstraints``
    (openmm-ml's default, True) drops the HBonds constraints between ML atoms. Returns (system, ML atom indices).
    """
    from openmmml import MLPotential

    mm_system = forcefield.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=1.0 * unit.nanometer,
                                        constraints=app.HBonds, rigidWater=True)
    ml_atoms = dipeptide_atoms(topology)
    potential = MLPotential("equiforce", modelPath=model_path)
    system = potential.createMixedSystem(topology, mm_system, ml_atoms, removeConstraints=True,
                                         forceGroup=ml_force_group)
    ml_set = set(ml_atoms)
    for k in range(system.getNumConstraints()):
        i, j, _ = system.getConstraintParameters(k)
        if i in ml_set or j in ml_set:
            raise RuntimeError(f"constraint {k} ({i}-{j}) still involves an ML atom")
    in_group = [force for force in system.getForces() if force.getForceGroup() == ml_force_group]
    if len(in_group) != 1:
        raise RuntimeError(f"force group {ml_force_group} should hold only the ML force, it holds {len(in_group)}")
    return system, ml_atoms


def cpu_platform(threads: int = 1) -> Tuple[openmm.Platform, Dict[str, str]]:
    """OpenMM's CPU platform with ``threads`` threads: also made its default, for contexts that OpenMM's own tools
    (Modeller) create without properties."""
    platform = openmm.Platform.getPlatformByName("CPU")
    platform.setPropertyDefaultValue("Threads", str(threads))
    return platform, {"Threads": str(threads)}


def make_simulation(topology: app.Topology, system: openmm.System, positions, timestep_fs: float = 1.0,
                    temperature_k: float = 300.0, friction_per_ps: float = 1.0, threads: int = 1,
                    platform_name: str = "CPU", seed: int = 2024) -> app.Simulation:
    """A Simulation with a LangevinMiddleIntegrator, positions set."""
    integrator = openmm.LangevinMiddleIntegrator(temperature_k * unit.kelvin, friction_per_ps / unit.picosecond,
                                                 timestep_fs * unit.femtosecond)
    integrator.setRandomNumberSeed(seed)
    if platform_name == "CPU":
        platform, properties = cpu_platform(threads)
    else:
        platform, properties = openmm.Platform.getPlatformByName(platform_name), {}
    simulation = app.Simulation(topology, system, integrator, platform, properties)
    simulation.context.setPositions(positions)
    return simulation


def energies(simulation: app.Simulation, ml_force_group: int = ML_FORCE_GROUP) -> Tuple[float, float, float]:
    """(total potential, ML group potential, kinetic) energy in kJ/mol."""
    context = simulation.context
    state = context.getState(getEnergy=True)
    ml_state = context.getState(getEnergy=True, groups={ml_force_group})
    kj = unit.kilojoule_per_mole
    return (state.getPotentialEnergy().value_in_unit(kj), ml_state.getPotentialEnergy().value_in_unit(kj),
            state.getKineticEnergy().value_in_unit(kj))


def degrees_of_freedom(system: openmm.System) -> int:
    dof = sum(3 for i in range(system.getNumParticles()) if system.getParticleMass(i) > 0 * unit.dalton)
    dof -= system.getNumConstraints()
    if any(isinstance(force, openmm.CMMotionRemover) for force in system.getForces()):
        dof -= 3
    return dof


def equilibrate(simulation: app.Simulation, steps: int, friction_per_ps: float, production_friction_per_ps: float
                ) -> float:
    """``steps`` untimed, unrecorded steps with a stronger thermostat (fast thermalisation after minimisation: with
    1/ps the minimised system takes picoseconds to reach the target temperature), then back to the production
    friction. Returns the wall time (s)."""
    integrator = simulation.integrator
    start = time.perf_counter()
    if steps > 0:
        integrator.setFriction(friction_per_ps / unit.picosecond)
        simulation.step(steps)
        integrator.setFriction(production_friction_per_ps / unit.picosecond)
    return time.perf_counter() - start


def run_md(simulation: app.Simulation, steps: int, steps_between_reports: int, warmup_steps: int,
           temperature_k: float, timestep_fs: float, show_progress: bool = True) -> Dict:
    """Warm-up (untimed), then ``steps`` steps in blocks of ``steps_between_reports``; times the step calls only
    (energy reporting excluded) and records energies after each block."""
    system = simulation.system
    dof = degrees_of_freedom(system)
    to_kelvin = 2.0 / (dof * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin))
    if warmup_steps > 0:
        start = time.perf_counter()
        simulation.step(warmup_steps)
        warmup_s = time.perf_counter() - start
        if show_progress:
            print(f"warm-up: {warmup_steps} steps in {warmup_s:.2f} s", flush=True)
    else:
        warmup_s = 0.0
    series = {"step": [], "time_ps": [], "potential_kj_mol": [], "ml_kj_mol": [], "temperature_k": []}

    def record(step: int) -> None:
        potential, ml, kinetic = energies(simulation)
        series["step"].append(step)
        series["time_ps"].append(step * timestep_fs * 1e-3)
        series["potential_kj_mol"].append(potential)
        series["ml_kj_mol"].append(ml)
        series["temperature_k"].append(kinetic * to_kelvin)
        if not all(math.isfinite(x) for x in (potential, ml, kinetic)):
            raise RuntimeError(f"non-finite energy at step {step}: {potential}, {ml}, {kinetic}")

    record(0)
    step_seconds = 0.0
    loop_start = time.perf_counter()
    done = 0
    bar = None
    if show_progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=steps, unit="step", file=sys.stdout, mininterval=2.0, dynamic_ncols=False, ncols=110)
        except ImportError:
            bar = None
    while done < steps:
        block = min(steps_between_reports, steps - done)
        start = time.perf_counter()
        simulation.step(block)
        step_seconds += time.perf_counter() - start
        done += block
        record(done)
        if show_progress:
            message = (f"E_pot {series['potential_kj_mol'][-1]:.1f}  E_ML {series['ml_kj_mol'][-1]:.1f} kJ/mol  "
                       f"T {series['temperature_k'][-1]:.0f} K  {1e3 * step_seconds / done:.1f} ms/step")
            if bar is not None:
                bar.set_postfix_str(message, refresh=False)
                bar.update(block)
            else:
                print(f"step {done}/{steps}  {message}", flush=True)
    if bar is not None:
        bar.close()
    loop_seconds = time.perf_counter() - loop_start
    ms_per_step = 1e3 * step_seconds / steps
    return {
        "series": series,
        "degrees_of_freedom": dof,
        "warmup_steps": warmup_steps,
        "warmup_s": warmup_s,
        "timed_steps": steps,
        "step_wall_s": step_seconds,
        "loop_wall_s_with_reporting": loop_seconds,
        "ms_per_step": ms_per_step,
        "ns_per_day": timestep_fs * 1e-6 * 86400.0 / (ms_per_step * 1e-3),
    }


def summarise(series: Dict[str, List[float]]) -> Dict[str, float]:
    """Mean, standard deviation and linear drift (per ps) of the recorded series."""
    t = np.asarray(series["time_ps"])
    out = {}
    for key in ("potential_kj_mol", "ml_kj_mol", "temperature_k"):
        y = np.asarray(series[key])
        out[f"{key}_mean"] = float(y.mean())
        out[f"{key}_std"] = float(y.std(ddof=1)) if len(y) > 1 else 0.0
        out[f"{key}_drift_per_ps"] = float(np.polyfit(t, y, 1)[0]) if len(y) > 2 else 0.0
    return out


def whole_residue_positions(topology: app.Topology, positions_nm: np.ndarray, edge_nm: float,
                            centre_atoms: Sequence[int]) -> np.ndarray:
    """Positions (nm) for a readable PDB: ``centre_atoms`` centred in the cubic box, every residue wrapped into
    the box as a whole.

    (``getState(enforcePeriodicBox=True)`` would wrap the dipeptide atom by atom: in the mixed system its bonds
    are no longer MM forces, so OpenMM sees each ML atom as a molecule of its own.)
    """
    shifted = positions_nm - positions_nm[list(centre_atoms)].mean(axis=0) + 0.5 * edge_nm
    for residue in topology.residues():
        indices = [atom.index for atom in residue.atoms()]
        shifted[indices] -= np.floor(shifted[indices].mean(axis=0) / edge_nm) * edge_nm
    return shifted


def write_plot(series: Dict[str, List[float]], path: str, title: str) -> None:
    """Two panels against time: total potential energy (with the temperature, faint, on a second axis) and the
    ML force group's energy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 6.2), sharex=True)
    top.plot(series["time_ps"], series["potential_kj_mol"], color="tab:blue", lw=1.2, label="total potential")
    top.set_ylabel("total potential (kJ/mol)", color="tab:blue")
    temperature_axis = top.twinx()
    temperature_axis.plot(series["time_ps"], series["temperature_k"], color="0.6", lw=0.8, ls="--")
    temperature_axis.set_ylabel("temperature (K), dashed", color="0.45")
    top.set_title(title, fontsize=9.5)
    bottom.plot(series["time_ps"], series["ml_kj_mol"], color="tab:red", lw=1.2)
    bottom.set_ylabel("ML part: SevenNet-0 (kJ/mol)", color="tab:red")
    bottom.set_xlabel("time (ps)")
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="equiforce file of SevenNet-0 (imported if absent)")
    parser.add_argument("--ps", type=float, default=2.0, help="picoseconds of timed NVT MD")
    parser.add_argument("--timestep-fs", type=float, default=1.0,
                        help="time step; the ML atoms' X-H bonds are unconstrained, keep it at 1 fs")
    parser.add_argument("--steps-between-reports", type=int, default=25)
    parser.add_argument("--warmup-steps", type=int, default=20, help="untimed MD steps before the timed run")
    parser.add_argument("--min-iterations", type=int, default=300, help="energy minimisation iterations (0: converge)")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--friction", type=float, default=1.0, help="1/ps")
    parser.add_argument("--equilibrate-ps", type=float, default=0.5,
                        help="untimed, unrecorded thermalisation after minimisation, before the recorded run")
    parser.add_argument("--equilibrate-friction", type=float, default=10.0,
                        help="friction (1/ps) during the thermalisation")
    parser.add_argument("--padding", type=float, default=1.0,
                        help="nm of water at least between the dipeptide and each face of the cubic box")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenMM CPU threads")
    parser.add_argument("--platform", default="CPU", help="OpenMM platform")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON result; the plot goes next to it (.png)")
    parser.add_argument("--final-pdb", default=DEFAULT_FINAL_PDB)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from equiforce.bench._machine import describe_machine, file_sha256

    model_path = ensure_model(args.model, progress=True)

    print("building the solvated dipeptide ...", flush=True)
    topology, positions, forcefield = build_solvated(args.padding, seed=args.seed, threads=args.threads)
    system, ml_atoms = build_mixed_system(topology, forcefield, model_path)
    box = [v.value_in_unit(unit.nanometer) for v in topology.getPeriodicBoxVectors()]
    n_waters = count_waters(topology)
    heavy = {name: xyz for residue, name, _, xyz in dipeptide_heavy_atoms() if residue == "ALA"}
    print(f"{topology.getNumAtoms()} atoms: {len(ml_atoms)} ML (ACE-ALA-NME), {n_waters} TIP3P waters; "
          f"box {box[0][0]:.3f} nm; {system.getNumConstraints()} constraints (none on ML atoms)", flush=True)

    simulation = make_simulation(topology, system, positions, args.timestep_fs, args.temperature, args.friction,
                                 args.threads, args.platform, args.seed)
    before = energies(simulation)
    start = time.perf_counter()
    simulation.minimizeEnergy(maxIterations=args.min_iterations)
    minimise_s = time.perf_counter() - start
    after = energies(simulation)
    print(f"minimised in {minimise_s:.1f} s: E_pot {before[0]:.1f} -> {after[0]:.1f} kJ/mol, "
          f"E_ML {before[1]:.1f} -> {after[1]:.1f} kJ/mol", flush=True)
    simulation.context.setVelocitiesToTemperature(args.temperature * unit.kelvin, args.seed)

    equilibration_steps = int(round(args.equilibrate_ps * 1000.0 / args.timestep_fs))
    equilibration_s = equilibrate(simulation, equilibration_steps, args.equilibrate_friction, args.friction)
    if equilibration_steps:
        _, _, kinetic = energies(simulation)
        dof = degrees_of_freedom(system)
        temperature = 2.0 * kinetic / (dof * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(
            unit.kilojoule_per_mole / unit.kelvin))
        print(f"thermalised: {args.equilibrate_ps:g} ps at friction {args.equilibrate_friction:g}/ps in "
              f"{equilibration_s:.1f} s, T {temperature:.0f} K", flush=True)

    steps = int(round(args.ps * 1000.0 / args.timestep_fs))
    md = run_md(simulation, steps, args.steps_between_reports, args.warmup_steps, args.temperature,
                args.timestep_fs, show_progress=not args.quiet)
    print(f"{steps} steps: {md['ms_per_step']:.2f} ms/step, {md['ns_per_day']:.3f} ns/day "
          f"({args.threads} thread{'s' if args.threads != 1 else ''})", flush=True)

    final = simulation.context.getState(getPositions=True)  # unwrapped: every molecule whole
    final_nm = whole_residue_positions(topology, final.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
                                       box[0][0], ml_atoms)
    os.makedirs(os.path.dirname(os.path.abspath(args.final_pdb)), exist_ok=True)
    with open(args.final_pdb, "w") as handle:
        app.PDBFile.writeFile(topology, final_nm * unit.nanometer, handle)

    summary = summarise(md["series"])
    result = {
        "description": "Alanine dipeptide (ACE-ALA-NME) with SevenNet-0 (equiforce import) in Amber14 TIP3P "
                       "water, openmm-ml mechanical embedding, Langevin NVT",
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "model": {"path": model_path, "sha256": file_sha256(model_path), "source": "SevenNet-0 (7net-0), sevenn"},
        "system": {
            "atoms": topology.getNumAtoms(),
            "ml_atoms": len(ml_atoms),
            "ml_atom_indices": ml_atoms,
            "water_molecules": n_waters,
            "box_nm": box[0][0],
            "padding_nm": args.padding,
            "force_field": ["amber14-all.xml", "amber14/tip3p.xml"],
            "nonbonded": "PME, 1.0 nm cutoff",
            "constraints": "HBonds + rigid water; removed between ML atoms (createMixedSystem removeConstraints=True)",
            "num_constraints": system.getNumConstraints(),
            "degrees_of_freedom": md["degrees_of_freedom"],
            "ml_force_group": ML_FORCE_GROUP,
            "alanine_chirality_volume_A3": alanine_chirality(heavy),
        },
        "md": {
            "integrator": "LangevinMiddleIntegrator",
            "temperature_k": args.temperature,
            "friction_per_ps": args.friction,
            "timestep_fs": args.timestep_fs,
            "steps": steps,
            "simulated_ps": steps * args.timestep_fs * 1e-3,
            "steps_between_reports": args.steps_between_reports,
            "warmup_steps": args.warmup_steps,
            "equilibration": {"ps": args.equilibrate_ps, "steps": equilibration_steps,
                              "friction_per_ps": args.equilibrate_friction, "wall_s": equilibration_s,
                              "note": "after minimisation and before the warm-up and the recorded, timed run"},
            "seed": args.seed,
            "platform": args.platform,
        },
        "minimisation": {
            "max_iterations": args.min_iterations,
            "wall_s": minimise_s,
            "potential_before_kj_mol": before[0],
            "potential_after_kj_mol": after[0],
            "ml_before_kj_mol": before[1],
            "ml_after_kj_mol": after[1],
        },
        "timing": {
            "ms_per_step": md["ms_per_step"],
            "ns_per_day": md["ns_per_day"],
            "timed_steps": md["timed_steps"],
            "step_wall_s": md["step_wall_s"],
            "loop_wall_s_with_reporting": md["loop_wall_s_with_reporting"],
            "warmup_s": md["warmup_s"],
            "note": "ms/step: wall time of the integrator's step calls only (energy reporting excluded), "
                    "after the untimed warm-up",
        },
        "threads": {"torch": torch.get_num_threads(),
                    "openmm": args.threads if args.platform == "CPU" else None},
        "summary": summary,
        "energies": md["series"],
        "final_structure": {
            "pdb": args.final_pdb,
            "alanine_chirality_volume_A3": alanine_chirality(
                {atom.name: 10.0 * final_nm[atom.index] for atom in topology.atoms() if atom.residue.name == "ALA"}),
        },
        "machine": describe_machine(),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=1)
        handle.write("\n")
    plot_path = os.path.splitext(args.out)[0] + ".png"
    write_plot(md["series"], plot_path,
               f"Alanine dipeptide: SevenNet-0 (22 atoms) in Amber14 TIP3P, {topology.getNumAtoms()} atoms\n"
               f"Langevin NVT {args.temperature:.0f} K, {args.timestep_fs:g} fs, {args.threads} CPU thread: "
               f"{md['ms_per_step']:.1f} ms/step, {md['ns_per_day']:.2f} ns/day")
    print(f"wrote {args.out}, {plot_path}, {args.final_pdb}", flush=True)
    print(f"potential: mean {summary['potential_kj_mol_mean']:.1f}, std {summary['potential_kj_mol_std']:.1f}, "
          f"drift {summary['potential_kj_mol_drift_per_ps']:.1f} kJ/mol/ps; ML part: std "
          f"{summary['ml_kj_mol_std']:.1f}, drift {summary['ml_kj_mol_drift_per_ps']:.1f} kJ/mol/ps; "
          f"T mean {summary['temperature_k_mean']:.1f} K", flush=True)
    return result


if __name__ == "__main__":
    main()
