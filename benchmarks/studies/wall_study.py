#!/usr/bin/env python
"""What the shipped water model's short-range wall does to the dynamics: its weights with and without the wall.

The shipped model adds E = A (r_on/r − 1)³ (A = 500 eV) for every pair closer than the shortest distance of its
element pair in the training data minus 0.03 Å. For H–H that onset, 1.355 Å, is an intramolecular distance: a
molecule whose H–O–H angle closes below about 90° is inside it. This script measures, on the same weights
exported three ways (float64, radial tables): ``shipped`` (the wall as shipped), ``no-HH-wall`` (H–H onset
removed, H–O and O–O kept) and ``network`` (no wall at all):

* ``scan``: one molecule of data frame 1599 bent from 60° to 160° and one O–H bond stretched from 0.80 to 2.0 Å
  (the geometries of ``recipes/water/scans.py``), energies relative to the frame itself, beside the GFN2-xTB
  energies that ``water_scans.json`` holds for its points: how much of the model's bend and stretch is wall and
  how much network, and where the network alone turns over;
* ``verlet``: from one equilibrated NVE state of the shipped model (``--state``, default the 384-atom float64
  0.25 fs case's state saved in ``equiforce bench nve``'s default work folder), 0.2 ps of Verlet NVE at 0.25,
  0.5 and 1.0 fs with each file and with flexible TIP3P-FB (from the same box after 2 ps of classical NVT:
  started from the model's geometry it heats to 800 K): the standard deviation and the net change of the total
  energy (sampled every step), the wall energy, and the highest temperature. A wall that makes the dynamics
  stiff shows as a larger fluctuation at the same dt.

Output: ``benchmarks/results/wall_study.json`` (rewritten after each case; a rerun skips the cases done) and
``wall_study.png``. About 15 minutes on one core.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/studies/wall_study.py [--state FILE]``
"""
import argparse
import copy
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPOSITORY = os.path.dirname(os.path.dirname(HERE))
WATER_RECIPE = os.path.join(REPOSITORY, "recipes", "water")  # scans.py: the scan geometries
RESULTS = os.path.join(REPOSITORY, "benchmarks", "results")
BEND_DEGREES = list(range(60, 161, 5))
STRETCH_ANGSTROM = [round(x, 2) for x in np.arange(0.80, 2.001, 0.05)]
TIMESTEPS_FS = [0.25, 0.5, 1.0]
VERLET_PS = 0.2


def variant_configs(config):
    """name -> model config: the shipped wall, the wall without its H–H onset, no wall."""
    without_hh = copy.deepcopy(config)
    without_hh["repulsion_radii"] = {k: v for k, v in config["repulsion_radii"].items() if k != "H-H"}
    network = copy.deepcopy(config)
    network["repulsion_strength"], network["repulsion_radii"] = 0.0, {}
    return {"shipped": copy.deepcopy(config), "no-HH-wall": without_hh, "network": network}


def export_variants(directory):
    """The shipped weights exported (float64, tables) with each wall; returns name -> path."""
    import equiforce
    from equiforce.bench import eager_copy
    from equiforce.demo import SHIPPED_MODEL

    module, metadata = equiforce.load_model(SHIPPED_MODEL)
    paths = {}
    for name, config in variant_configs(metadata["config"]).items():
        path = os.path.join(directory, f"water-gfn2-{name}-float64.pt")
        if not os.path.exists(path):
            eager = eager_copy(module, dict(metadata, config=config))
            equiforce.export_model(eager, path + ".partial", dtype="float64", fused_convolution=True)
            os.replace(path + ".partial", path)
        paths[name] = path
    return paths, metadata


def scan(paths):
    """Bend and stretch energies (eV, relative to the undistorted frame) of each file, and GFN2-xTB's where
    ``water_scans.json`` has the point."""
    sys.path.insert(0, WATER_RECIPE)
    from scans import DATA, FRAME, bent, stretched

    from equiforce.calculator import EquiforceCalculator
    from equiforce.data import read_atoms

    base = read_atoms(DATA, index=FRAME)
    geometries = {"bend": [(a, bent(base, a)) for a in BEND_DEGREES],
                  "stretch": [(r, stretched(base, r)) for r in STRETCH_ANGSTROM]}
    result = {"frame": FRAME, "molecule": 0, "bend_degrees": BEND_DEGREES, "stretch_angstrom": STRETCH_ANGSTROM}
    for name, path in paths.items():
        calculator = EquiforceCalculator(path)

        def energy(atoms):
            atoms = atoms.copy()
            atoms.calc = calculator
            return float(atoms.get_potential_energy())

        reference = energy(base)
        result[name] = {kind: [energy(atoms) - reference for _, atoms in points] for kind, points in geometries.items()}
    scans_path = os.path.join(RESULTS, "water_scans.json")
    if os.path.exists(scans_path):
        with open(scans_path) as handle:
            points = json.load(handle)["points"]
        reference = points["reference"]["gfn2_eV"]
        result["gfn2"] = {kind: [points[f"{kind} {value}"]["gfn2_eV"] - reference if f"{kind} {value}" in points
                                 else None for value in values]
                          for kind, values in (("bend", BEND_DEGREES), ("stretch", STRETCH_ANGSTROM))}
    return result


def verlet(method, path, state_file, dt_fs, radii_config):
    """0.2 ps of Verlet NVE from ``state_file``: total-energy std and net change (kJ/mol), wall energy (eV),
    highest temperature (K)."""
    import openmm
    from openmm import unit

    from equiforce.bench import nve_system
    from equiforce.systems import equilibrate_classically, water_topology
    from equiforce.units import boltzmann_kj_per_mol
    from equiforce.water_geometry import wall_contacts

    with open(state_file) as handle:
        state = openmm.XmlSerializer.deserialize(handle.read())
    box = state.getPeriodicBoxVectors()
    topology = water_topology(state.getPositions(asNumpy=True).shape[0] // 3, box[0][0].value_in_unit(unit.nanometer))
    system = nve_system("classical" if method == "TIP3P-FB" else "equiforce", "float64", path, topology)
    integrator = openmm.VerletIntegrator(dt_fs * unit.femtoseconds)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    context.setPeriodicBoxVectors(*box)
    positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    velocities = state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
    if method == "TIP3P-FB":  # its own liquid: the model's geometry is far from TIP3P-FB's minimum (it heats to 800 K)
        positions, velocities = equilibrate_classically(topology, positions, 300.0, 2.0, seed=1,
                                                        properties={"Threads": "1"})
    context.setPositions(positions * unit.nanometer)
    context.setVelocities(velocities * unit.nanometer / unit.picosecond)
    n_dof = 3 * topology.getNumAtoms() - 3
    totals, kinetic, walls = [], [], []
    box_nm = np.array([[v.x, v.y, v.z] for v in box.value_in_unit(unit.nanometer)])
    for step in range(int(round(VERLET_PS * 1000 / dt_fs)) + 1):
        if step:
            integrator.step(1)
        current = context.getState(getEnergy=True, getPositions=True)
        kinetic.append(current.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole))
        totals.append(kinetic[-1] + current.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        if step % 4 == 0:
            walls.append(wall_contacts(current.getPositions(asNumpy=True).value_in_unit(unit.nanometer), box_nm,
                                       radii_config["repulsion_radii"], radii_config["repulsion_strength"]))
    totals = np.array(totals)
    tenth = max(1, len(totals) // 10)
    return {"method": method, "dt_fs": dt_fs, "duration_ps": VERLET_PS, "steps": len(totals) - 1,
            "total_energy_std_kJ_per_mol": float(totals.std()),
            "net_change_kJ_per_mol": float(totals[-tenth:].mean() - totals[:tenth].mean()),
            "max_temperature_K": float(2 * max(kinetic) / (n_dof * boltzmann_kj_per_mol(1.0))),
            "shipped_wall_energy_eV_mean": float(np.mean([w["wall_energy_eV"] for w in walls])),
            "shipped_wall_largest_pair_eV": float(max(w["largest_pair_energy_eV"] for w in walls)),
            "hh_intra_min_angstrom": float(min(w["hh_intra_min"] for w in walls)),
            "total_energy_kJ_per_mol": (totals - totals[0]).tolist()}


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    scans = result["scan"]
    for axis, kind, xs, label in ((axes[0], "bend", scans["bend_degrees"], "H–O–H angle of one molecule (°)"),
                                  (axes[1], "stretch", scans["stretch_angstrom"], "one O–H bond (Å)")):
        for name in ("shipped", "no-HH-wall", "network"):
            axis.plot(xs, scans[name][kind], marker=".", label=f"model, {name}")
        if "gfn2" in scans:
            points = [(x, y) for x, y in zip(xs, scans["gfn2"][kind]) if y is not None]
            axis.plot(*zip(*points), "k^", label="GFN2-xTB")
        ranges = result.get("data_ranges") or {}
        bounds = ((ranges.get("hoh_min_degrees"), ranges.get("hoh_max_degrees")) if kind == "bend"
                  else (ranges.get("oh_min_angstrom"), ranges.get("oh_max_angstrom")))
        if None not in bounds:
            axis.axvspan(*bounds, color="0.9", label="training data")
        axis.set_ylim(-0.5, 2.5)
        axis.set_xlabel(label)
        axis.set_ylabel("energy − frame (eV)")
        axis.legend(fontsize=7)
    blown = []
    for record in result["verlet"]:
        if record["dt_fs"] != 0.5:
            continue
        if record["max_temperature_K"] > 900:  # collapsed molecules: thousands of kJ/mol, off this scale
            blown.append(record["method"])
            continue
        series = np.array(record["total_energy_kJ_per_mol"])
        axes[2].plot(np.arange(len(series)) * 0.5e-3, series, lw=0.7, label=record["method"])
    axes[2].set_xlabel("NVE time (ps), dt 0.5 fs")
    if blown:
        axes[2].set_title(f"not drawn (heated past 900 K): {', '.join(blown)}", fontsize=9)
    axes[2].set_ylabel("total energy − start (kJ/mol)")
    axes[2].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", default=os.path.join(REPOSITORY, "runs", "bench", "nve",
                                                        "equiforce-float64-0.25fs-128mol", "state.xml"))
    parser.add_argument("--work", default=os.path.join(REPOSITORY, "runs", "wall_study"))
    parser.add_argument("--out", default=os.path.join(RESULTS, "wall_study.json"))
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.join(REPOSITORY, "python"))
    import torch

    from equiforce.bench import describe_machine, write_json

    torch.set_num_threads(1)
    os.makedirs(args.work, exist_ok=True)
    paths, metadata = export_variants(args.work)
    result = {"machine": describe_machine(), "wall": {k: metadata["config"][k] for k in ("repulsion_radii",
                                                                                       "repulsion_strength")},
              "verlet": []}
    if os.path.exists(args.out):
        with open(args.out) as handle:
            result = json.load(handle)
    scans_path = os.path.join(RESULTS, "water_scans.json")
    if os.path.exists(scans_path):
        with open(scans_path) as handle:
            result["data_ranges"] = json.load(handle)["data_ranges"]
    if "scan" not in result:
        result["scan"] = scan(paths)
        write_json(result, args.out)
    if "state" not in result:  # a resumed run keeps its state: a copy, since the benchmark overwrites its own
        import shutil

        result["state"] = os.path.join(args.work, "start_state.xml")
        shutil.copyfile(args.state, result["state"])
        result["state_source"] = os.path.relpath(args.state, REPOSITORY)
    if "state_time_ps" not in result:
        import openmm

        with open(result["state"]) as handle:  # NVE time of the benchmark run the state was taken from
            result["state_time_ps"] = openmm.XmlSerializer.deserialize(handle.read()).getTime()._value
    done = {(r["method"], r["dt_fs"]) for r in result["verlet"]}
    from tqdm import tqdm

    cases = [(method, dt) for dt in TIMESTEPS_FS for method in ("TIP3P-FB", *paths)]
    for method, dt in tqdm(cases, desc="Verlet from one state"):
        if (method, dt) in done:
            continue
        result["verlet"].append(verlet(method, paths.get(method), result["state"], dt, result["wall"]))
        write_json(result, args.out)
    write_json(result, args.out)
    plot(result, os.path.splitext(args.out)[0] + ".png")
    for record in result["verlet"]:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()
               if k != "total_energy_kJ_per_mol"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
