#!/usr/bin/env python
"""Where the water model holds and where it stops: one molecule distorted inside liquid, model vs GFN2-xTB.

From frame 1599 of the data set (never used in training), molecule 0 is distorted while the other 31 stay put:

- ``stretch``: one O–H bond from 0.80 to 1.50 Å along its own direction;
- ``bend``: the H–O–H angle from 60° to 160°, both bond lengths kept, the second H turned in the molecule's plane.

and, for the density: ``volume``: six frames near 1 g/cm³ (270–350 K) scaled by ±1 % in length, molecules moved
rigidly with their oxygen. The central difference of the energy gives the configurational pressure
−∂E/∂V (the rigid-molecule virial); with the molecular kinetic term N_mol k_B T / V at 300 K it is the pressure
each method would need a barostat to balance at that density: the sign says whether NPT expands or compresses.

Each point is labelled with GFN2-xTB (the settings of ``make_dataset.py``, periodic) and evaluated with the model
(the shipped file, or ``--model``); energies are relative to the undistorted frame. The span the training data
covers (longest intramolecular O–H, range of H–O–H angles over all 1600 frames) is shaded in the plot, so one
sees how far beyond the data the model stays right, and what the short-range wall does.

Results: ``benchmarks/results/water_scans.json`` (written after every point; a rerun skips the points done) and
``water_scans.png``. About 5 s of GFN2-xTB per point on one core, 27 points.

Usage (from the repository root)::

    python recipes/water/scans.py [--model FILE] [--gfn2-from water_scans.json --out OTHER.json]
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPOSITORY = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(HERE, "data", "water_gfn2.extxyz.xz")
RESULTS = os.path.join(REPOSITORY, "benchmarks", "results")
FRAME = 1599
STRETCH_ANGSTROM = [round(x, 2) for x in np.arange(0.80, 1.501, 0.05)]
BEND_DEGREES = list(range(60, 161, 10))
VOLUME_FRAMES = [1507, 1509, 1512, 1513, 1515, 1520]  # densities 0.97-1.03 g/cm^3, 269-353 K
VOLUME_SCALES = [0.99, 1.01]  # box length factors; 1.0 is the frame itself
PRESSURE_TEMPERATURE_K = 300.0
CM3_PER_A3 = 1e-24  # (1e-8 cm)^3, a definition


def minimum_image(delta: np.ndarray, edge: float) -> np.ndarray:
    return delta - edge * np.round(delta / edge)


def molecule_geometry(positions: np.ndarray, edge: float):
    """Intramolecular O–H lengths [M, 2] (Å) and H–O–H angles [M] (degrees); atoms ordered O, H, H."""
    oxygen = positions[0::3, None, :]
    hydrogens = np.stack([positions[1::3], positions[2::3]], axis=1)
    bonds = minimum_image(hydrogens - oxygen, edge)  # [M, 2, 3]
    lengths = np.linalg.norm(bonds, axis=-1)
    cosine = np.sum(bonds[:, 0] * bonds[:, 1], axis=-1) / (lengths[:, 0] * lengths[:, 1])
    return lengths, np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def data_ranges(frames) -> dict:
    lengths, angles = [], []
    for atoms in frames:
        length, angle = molecule_geometry(atoms.get_positions(), atoms.cell[0, 0])
        lengths.append(length.ravel())
        angles.append(angle)
    lengths, angles = np.concatenate(lengths), np.concatenate(angles)
    return {"oh_min_angstrom": float(lengths.min()), "oh_max_angstrom": float(lengths.max()),
            "hoh_min_degrees": float(angles.min()), "hoh_max_degrees": float(angles.max())}


def stretched(atoms, length: float):
    """Copy with the first O–H bond of molecule 0 set to ``length`` Å along its own direction."""
    out = atoms.copy()
    positions = out.get_positions()
    bond = minimum_image(positions[1] - positions[0], out.cell[0, 0])
    positions[1] = positions[0] + bond / np.linalg.norm(bond) * length
    out.set_positions(positions)
    return out


def bent(atoms, angle_degrees: float):
    """Copy with the H–O–H angle of molecule 0 set to ``angle_degrees``: the second H turns in the plane."""
    out = atoms.copy()
    positions = out.get_positions()
    edge = out.cell[0, 0]
    first = minimum_image(positions[1] - positions[0], edge)
    second = minimum_image(positions[2] - positions[0], edge)
    u = first / np.linalg.norm(first)
    in_plane = second - np.dot(second, u) * u
    v = in_plane / np.linalg.norm(in_plane)
    theta = np.radians(angle_degrees)
    positions[2] = positions[0] + np.linalg.norm(second) * (np.cos(theta) * u + np.sin(theta) * v)
    out.set_positions(positions)
    return out


def scaled(atoms, factor: float):
    """Copy with the box and the oxygen positions scaled by ``factor``; each molecule moves rigidly with its O."""
    out = atoms.copy()
    positions = out.get_positions()
    shift = (factor - 1.0) * positions[0::3]  # [M, 3]
    out.set_positions(positions + np.repeat(shift, 3, axis=0))
    out.set_cell(out.cell.array * factor, scale_atoms=False)
    return out


def trajectory_frames(run_dir: str, times_ps):
    """ASE frames (Å, periodic) of a ``validate.py`` run at the given times: the model's own liquid."""
    import mdtraj
    from ase import Atoms, units

    trajectory = mdtraj.load_dcd(os.path.join(run_dir, "traj.dcd"), top=os.path.join(run_dir, "start.pdb"))
    # one log row per saved frame, in the same order as the trajectory: its time column dates the frames
    saved_ps = np.loadtxt(os.path.join(run_dir, "log.csv"), delimiter=",", skiprows=1, usecols=1, ndmin=1)
    symbols = [atom.element.symbol for atom in trajectory.topology.atoms]
    frames = {}
    for time_ps in times_ps:
        index = int(np.argmin(np.abs(saved_ps - time_ps)))
        if abs(saved_ps[index] - time_ps) > 1e-6 or index >= len(trajectory):
            continue
        atoms = Atoms(symbols, positions=10.0 * trajectory.xyz[index], cell=10.0 * trajectory.unitcell_vectors[index],
                      pbc=True)
        grams = np.sum(atoms.get_masses()) / units._Nav  # amu = g/mol, over Avogadro's number
        atoms.info["density_g_cm3"] = float(grams / (atoms.get_volume() * CM3_PER_A3))
        frames[f"{os.path.basename(os.path.normpath(run_dir))} {time_ps:g}ps"] = atoms
    return frames


def pressures(result: dict) -> dict:
    """Per frame and method: configurational pressure −ΔE/ΔV and total with the molecular kinetic term (bar)."""
    from ase import units

    table = {}
    for frame in result.get("volume_sources", VOLUME_FRAMES):
        keys = [f"volume {frame} {scale}" for scale in VOLUME_SCALES]
        if not all(key in result["points"] for key in keys):
            continue
        low, high = (result["points"][key] for key in keys)
        delta_volume = high["volume_A3"] - low["volume_A3"]
        volume = result["points"][f"volume {frame} 1.0"]["volume_A3"]
        molecules = result["points"][f"volume {frame} 1.0"]["molecules"]
        kinetic = molecules * units.kB * PRESSURE_TEMPERATURE_K / volume  # eV/Å^3, molecular (rigid) kinetic term
        entry = {"density_g_cm3": low["density_g_cm3"]}
        for method in ("gfn2", "model"):
            configurational = -(high[f"{method}_eV"] - low[f"{method}_eV"]) / delta_volume
            entry[f"{method}_configurational_bar"] = configurational / units.bar
            entry[f"{method}_total_bar"] = (configurational + kinetic) / units.bar
        table[str(frame)] = entry
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=os.path.join(REPOSITORY, "python", "equiforce", "models", "water-gfn2.pt"))
    parser.add_argument("--out", default=os.path.join(RESULTS, "water_scans.json"))
    parser.add_argument("--plot-only", action="store_true", help="redraw the plot from the JSON")
    parser.add_argument("--pressure-run", default=os.path.join(REPOSITORY, "runs", "validate", "nvt-300"),
                        help="a validate.py run folder: its frames at --pressure-times also get the volume scan")
    parser.add_argument("--pressure-times", type=float, nargs="*", default=[10, 15, 20, 25, 30],
                        help="ps (frames of --pressure-run; none: skip)")
    parser.add_argument("--gfn2-from", default=None, metavar="JSON",
                        help="take the GFN2-xTB energy of each point from this earlier scans JSON (same frame and "
                             "geometries, another model): only the model is evaluated")
    args = parser.parse_args(argv)
    if args.plot_only:
        with open(args.out) as handle:
            plot(json.load(handle), os.path.splitext(args.out)[0] + ".png")
        return 0

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, HERE)
    from make_dataset import label  # GFN2-xTB with the data set's settings
    from tqdm import tqdm

    from equiforce import read_metadata
    from equiforce.calculator import EquiforceCalculator
    from equiforce.data import read_atoms

    def save() -> None:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out + ".tmp", "w") as handle:
            json.dump(result, handle, indent=1)
        os.replace(args.out + ".tmp", args.out)

    frames = read_atoms(DATA, index=":")
    base = frames[FRAME]
    result = {"model": os.path.relpath(args.model, REPOSITORY), "frame": FRAME, "molecule": 0, "points": {}}
    if os.path.exists(args.out):
        with open(args.out) as handle:
            previous = json.load(handle)
        if previous.get("model") == result["model"]:
            result = previous
    result["data_ranges"] = data_ranges(frames)
    result["wall_onsets_angstrom"] = read_metadata(args.model)["config"].get("repulsion_radii")

    known = {}
    if args.gfn2_from:
        with open(args.gfn2_from) as handle:
            earlier = json.load(handle)
        if earlier.get("frame") != FRAME:
            raise SystemExit(f"{args.gfn2_from} scans frame {earlier.get('frame')}, this script frame {FRAME}")
        known = {key: point["gfn2_eV"] for key, point in earlier["points"].items()}
        result["gfn2_from"] = os.path.relpath(args.gfn2_from, REPOSITORY)
    calculator = EquiforceCalculator(args.model)
    points = [("reference", "reference", None, base)]  # (key in result["points"], kind, value, frame)
    points += [(f"stretch {r}", "stretch", r, stretched(base, r)) for r in STRETCH_ANGSTROM]
    points += [(f"bend {a}", "bend", a, bent(base, a)) for a in BEND_DEGREES]
    sources = {frame: frames[frame] for frame in VOLUME_FRAMES}
    if args.pressure_times and os.path.exists(os.path.join(args.pressure_run, "traj.dcd")):
        sources.update(trajectory_frames(args.pressure_run, args.pressure_times))
    result["volume_sources"] = list(sources)
    points += [(f"volume {frame} {factor}", "volume", (frame, factor), scaled(atoms, factor))
               for frame, atoms in sources.items() for factor in [1.0] + VOLUME_SCALES]
    for key, kind, value, atoms in tqdm(points, desc="scan points"):
        if key in result["points"]:
            continue
        gfn2 = known[key] if key in known else float(label(atoms).get_potential_energy())
        model_atoms = atoms.copy()
        model_atoms.calc = calculator
        result["points"][key] = {"kind": kind, "value": value, "gfn2_eV": gfn2,
                                 "model_eV": float(model_atoms.get_potential_energy()),
                                 "volume_A3": float(atoms.get_volume()), "molecules": len(atoms) // 3,
                                 "density_g_cm3": float(atoms.info.get("density_g_cm3", float("nan")))}
        save()
    result["pressures"] = pressures(result)
    save()
    plot(result, os.path.splitext(args.out)[0] + ".png")
    for frame, entry in result["pressures"].items():
        print(f"{frame} ({entry['density_g_cm3']:.3f} g/cm3): pressure at 300 K, GFN2-xTB "
              f"{entry['gfn2_total_bar']:+.0f} bar, model {entry['model_total_bar']:+.0f} bar")
    return 0


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = result["points"]["reference"]
    ranges = result["data_ranges"]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, kind, unit_label, span in (
        (axes[0], "stretch", "O–H length (Å)", (ranges["oh_min_angstrom"], ranges["oh_max_angstrom"])),
        (axes[1], "bend", "H–O–H angle (°)", (ranges["hoh_min_degrees"], ranges["hoh_max_degrees"])),
    ):
        points = sorted((p for p in result["points"].values() if p["kind"] == kind), key=lambda p: p["value"])
        x = [p["value"] for p in points]
        axis.axvspan(*span, color="0.9", label="range of the training data")
        axis.plot(x, [p["gfn2_eV"] - reference["gfn2_eV"] for p in points], "k-o", ms=3, label="GFN2-xTB")
        model = [p["model_eV"] - reference["model_eV"] for p in points]
        axis.plot(x, model, "C3-s", ms=3, label="equiforce")
        top = 1.5 * max(p["gfn2_eV"] - reference["gfn2_eV"] for p in points)
        axis.set_ylim(-0.2, top)
        for value, energy in zip(x, model):
            if energy > top:  # the wall, far above GFN2: say where it went rather than squash the plot
                axis.annotate(f"{energy:.1f} eV", (value, top), xytext=(0, -12), textcoords="offset points",
                              fontsize=7, color="C3", ha="left", arrowprops=dict(arrowstyle="->", color="C3"))
        axis.set_xlabel(unit_label)
        axis.set_ylabel("ΔE (eV), relative to the undistorted frame")
        axis.legend(fontsize=8)
    axes[0].set_title("one O–H bond stretched, in liquid", fontsize=9)
    axes[1].set_title("one molecule bent, in liquid", fontsize=9)
    figure.suptitle(f"{result['model']}: frame {result['frame']} of the water data (unseen in training)",
                    fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
