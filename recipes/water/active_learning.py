#!/usr/bin/env python
"""Round-2 water data: configurations where a candidate model leaves the data, labelled with GFN2-xTB.

1. ``sample``: for each condition (temperature evenly spaced over ``--t-min``..``--t-max``, density over
   0.95-1.05 g/cm^3), equilibrate 32 flexible TIP3P-FB molecules classically (5 ps, 0.5 fs), then switch to the
   candidate model (Langevin, ``--dt-fs``) for up to ``--max-ps``. A frame is saved every ``--every-fs``. The
   run stops ``--after-fs`` after the first frame that leaves the ranges of the original data (shortest H-H,
   O-H, O-O distances, longest intramolecular O-H), or at a broken molecule. Kept: the frames of the last
   ``--keep-fs`` before the stop. The configurations go to ``<out stem>_configs.npz``, rewritten atomically
   after every condition, so sampling resumes by condition.
2. ``distort``: frames of the original data set (every ``--distort-every``-th) with one randomly chosen
   molecule distorted to where the shipped model is wrong (``benchmarks/results/wall_study.json``): its H–O–H
   angle set in 55-92° (below the data's 92°; the network alone falls into a hole below 80° there), or opened
   to 122-165°, or one O–H bond stretched to 1.17-1.9 Å (the network flattens at 0.5 eV from 1.25 Å) or
   compressed to 0.80-0.91 Å. Each kind gets a quarter of the frames; the values are drawn uniformly from the
   seed. Written to ``<out stem>_configs.npz`` of ``--out`` (default ``data/water_gfn2_round2_distorted.extxyz``).
3. ``label``: GFN2-xTB energies and forces (the settings of ``make_dataset.py``) of the sampled frames in
   order, appended to ``--out`` one frame at a time (resumes from the frames already there). With
   ``--hold-out-every K`` the frames of every K-th condition go last, a held-out tail (``label_order``);
   ``frame_id`` in each frame's info is its index among the configurations; a resumed ``label`` must be given
   the same ``--hold-out-every`` (the order decides which frame comes next).

Usage (from the repository root)::

    python recipes/water/active_learning.py sample --model python/equiforce/models/water-gfn2.pt
    OMP_NUM_THREADS=1 python recipes/water/active_learning.py label
    python recipes/water/active_learning.py distort
    OMP_NUM_THREADS=1 python recipes/water/active_learning.py label --out recipes/water/data/water_gfn2_round2_distorted.extxyz

    # round 3: MD of the round-2 model up to 550 K (the start of the 400 K validation heats to 550 K)
    python recipes/water/active_learning.py sample --model recipes/water/models/water-gfn2-round2.pt \
        --out recipes/water/data/water_gfn2_round3_sampled.extxyz --t-max 550 --every-fs 20 --keep-fs 300 \
        --after-fs 1000 --max-ps 1.5 --seed 2026
    OMP_NUM_THREADS=1 python recipes/water/active_learning.py label --round 3 --hold-out-every 6 \
        --out recipes/water/data/water_gfn2_round3_sampled.extxyz
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
DEFAULT_OUT = os.path.join(HERE, "data", "water_gfn2_round2.extxyz")
DISTORTED_OUT = os.path.join(HERE, "data", "water_gfn2_round2_distorted.extxyz")
ORIGINAL_DATA = os.path.join(HERE, "data", "water_gfn2.extxyz.xz")
#: distortion kind -> range of the value it sets (degrees for angles, Å for bonds)
DISTORTIONS = {"bend closed": (55.0, 92.0), "bend open": (122.0, 165.0), "stretch": (1.17, 1.9),
               "compress": (0.80, 0.91)}
N_MOLECULES = 32
#: ranges of the original 1600 frames (Å): shortest H-H, H-O (any pair), O-O, longest intramolecular O-H
DATA_RANGES = {"H-H": 1.385, "H-O": 0.918, "O-O": 2.403, "OH_max": 1.15}


def _configs_path(out):
    return os.path.splitext(out)[0] + "_configs.npz"


def _distances(positions_A, edge_A):
    delta = positions_A[None] - positions_A[:, None]  # [N, N, 3]
    delta -= edge_A * np.round(delta / edge_A)
    distance = np.linalg.norm(delta, axis=-1)
    np.fill_diagonal(distance, np.inf)
    return distance


def outside_data(positions_A, edge_A):
    """Names of the data ranges this frame leaves (empty: inside); atoms ordered O, H, H per molecule."""
    distance = _distances(positions_A, edge_A)
    oxygen = np.zeros(len(positions_A), bool)
    oxygen[0::3] = True
    reasons = []
    if distance[np.ix_(~oxygen, ~oxygen)].min() < DATA_RANGES["H-H"]:
        reasons.append("H-H")
    if distance[np.ix_(oxygen, ~oxygen)].min() < DATA_RANGES["H-O"]:
        reasons.append("H-O")
    if distance[np.ix_(oxygen, oxygen)].min() < DATA_RANGES["O-O"]:
        reasons.append("O-O")
    own = np.array([distance[3 * m, 3 * m + k] for m in range(len(positions_A) // 3) for k in (1, 2)])
    if own.max() > DATA_RANGES["OH_max"]:
        reasons.append("OH_max")
    return reasons, float(own.max())


def sample_condition(model, temperature_K, density, seed, args):
    from equiforce.openmm import create_force  # first: loads the openmm-torch plugin before any Context exists
    import openmm
    from openmm import unit

    from equiforce.systems import equilibrate_classically, water_box

    topology, positions = water_box(N_MOLECULES, density, seed=seed)
    edge_nm = topology.getPeriodicBoxVectors()[0][0].value_in_unit(unit.nanometer)
    positions, velocities = equilibrate_classically(topology, positions, temperature_K, time_ps=5.0, seed=seed)

    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    system.addForce(create_force(model, topology))
    ml_integrator = openmm.LangevinMiddleIntegrator(temperature_K * unit.kelvin, 1 / unit.picosecond,
                                                    args.dt_fs * unit.femtoseconds)
    ml_integrator.setRandomNumberSeed(seed + 1)
    ml_context = openmm.Context(system, ml_integrator, openmm.Platform.getPlatformByName("CPU"))
    ml_context.setPositions(positions * unit.nanometer)
    ml_context.setVelocities(velocities * unit.nanometer / unit.picosecond)
    every = max(1, round(args.every_fs / args.dt_fs))
    frames, first_exit, stop_reason = [], None, "time limit"
    for k in range(int(round(args.max_ps * 1000 / args.every_fs))):
        ml_integrator.step(every)
        positions_A = ml_context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(
            unit.angstrom)
        time_fs = (k + 1) * every * args.dt_fs
        if not np.all(np.isfinite(positions_A)):
            stop_reason = f"non-finite positions at {time_fs:.0f} fs"
            break
        frames.append((time_fs, positions_A))
        reasons, longest_oh = outside_data(positions_A, edge_nm * 10)
        if longest_oh > 1.3:
            stop_reason = f"O-H {longest_oh:.2f} Å at {time_fs:.0f} fs"
            break
        if reasons and first_exit is None:
            first_exit = (time_fs, reasons)
        if first_exit is not None and time_fs >= first_exit[0] + args.after_fs:
            stop_reason = f"left the data ({'/'.join(first_exit[1])}) at {first_exit[0]:.0f} fs"
            break
    end = frames[-1][0] if frames else 0.0
    kept = [p for t, p in frames if t > end - args.keep_fs and np.all(np.isfinite(p))]
    return np.array(kept), edge_nm * 10, stop_reason


def run_sample(args):
    path = _configs_path(args.out)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    data = dict(np.load(path, allow_pickle=False)) if os.path.exists(path) else {}
    done = int(data.get("conditions_done", 0))
    temperatures = np.linspace(args.t_min, args.t_max, args.conditions)
    densities = np.linspace(0.95, 1.05, args.conditions)[np.random.default_rng(args.seed).permutation(args.conditions)]
    positions = list(data["positions_A"]) if "positions_A" in data else []
    meta = json.loads(str(data["meta"])) if "meta" in data else []
    for c in range(done, args.conditions):
        start = time.time()
        kept, edge_A, reason = sample_condition(args.model, float(temperatures[c]), float(densities[c]),
                                                args.seed * 1000 + c, args)
        for p in kept:
            positions.append(p)
            meta.append({"condition": c, "temperature_K": float(temperatures[c]), "density_g_cm3": float(densities[c]),
                         "box_edge_A": edge_A})
        print(f"condition {c}: {temperatures[c]:.0f} K, {densities[c]:.3f} g/cm3: {reason}; kept {len(kept)} "
              f"frames ({time.time() - start:.0f} s)", flush=True)
        tmp = path + ".tmp.npz"
        np.savez(tmp, positions_A=np.array(positions).reshape(-1, 3 * N_MOLECULES, 3), meta=json.dumps(meta),
                 conditions_done=c + 1, model=os.path.basename(args.model))
        os.replace(tmp, path)


def distorted_frames(frames, every, seed):
    """(positions [K, 96, 3] Å, meta list): every ``every``-th frame with one molecule distorted (DISTORTIONS,
    the kinds in turn, values uniform); the molecule and value come from ``seed``."""
    from scans import bent, stretched  # the scan geometries: angle turned in the molecule's plane, bond along itself

    rng = np.random.default_rng(seed)
    kinds = list(DISTORTIONS)
    positions, meta = [], []
    for k, index in enumerate(range(0, len(frames), every)):
        atoms = frames[index]
        molecule = int(rng.integers(len(atoms) // 3))
        kind = kinds[k % len(kinds)]
        value = float(rng.uniform(*DISTORTIONS[kind]))
        order = np.arange(len(atoms))  # bring the molecule to the front: the scan helpers distort molecule 0
        order[[0, 1, 2, 3 * molecule, 3 * molecule + 1, 3 * molecule + 2]] = [3 * molecule, 3 * molecule + 1,
                                                                             3 * molecule + 2, 0, 1, 2]
        moved = atoms[order]
        distorted = bent(moved, value) if kind.startswith("bend") else stretched(moved, value)
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        positions.append(distorted.get_positions()[back])
        meta.append({"source_frame": index, "distortion": kind, "value": value, "molecule": molecule,
                     "temperature_K": float(atoms.info.get("temperature_K", np.nan)),
                     "density_g_cm3": float(atoms.info.get("density_g_cm3", np.nan)),
                     "box_edge_A": float(atoms.cell[0, 0])})
    return np.array(positions), meta


def run_distort(args):
    from equiforce.data import read_atoms

    out = args.out if args.out != DEFAULT_OUT else DISTORTED_OUT
    path = _configs_path(out)
    positions, meta = distorted_frames(read_atoms(ORIGINAL_DATA, index=":"), args.distort_every, args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, positions_A=positions, meta=json.dumps(meta), model="none (distorted data frames)")
    os.replace(tmp, path)
    counts = {kind: sum(m["distortion"] == kind for m in meta) for kind in DISTORTIONS}
    print(f"{len(meta)} distorted frames written to {path}: {counts}")


def label_order(meta, hold_out_every=0):
    """Configuration indices in the order ``label`` writes them: sampling order, but with ``hold_out_every`` = K
    > 0 the conditions c with c % K == K - 1 go last (in order), so ``file@:n`` with n the number of the other
    conditions' frames selects training frames and the tail is a held-out set spread over the temperatures."""
    def held_out(k):
        return hold_out_every > 0 and "condition" in meta[k] and meta[k]["condition"] % hold_out_every == hold_out_every - 1

    return sorted(range(len(meta)), key=lambda k: (held_out(k), k))


def run_label(args):
    from ase import Atoms

    from equiforce.data import cut_incomplete_frame
    from make_dataset import frame_to_text, label

    data = np.load(_configs_path(args.out), allow_pickle=False)
    positions, meta = data["positions_A"], json.loads(str(data["meta"]))
    order = label_order(meta, args.hold_out_every)
    done = cut_incomplete_frame(args.out)[0] if os.path.exists(args.out) else 0  # a killed run loses one frame
    for position, k in enumerate(order[done:], start=done):
        info = meta[k]
        edge = info["box_edge_A"]
        atoms = Atoms(["O", "H", "H"] * N_MOLECULES, positions=positions[k], cell=np.diag([edge] * 3), pbc=True)
        atoms.info.update(info, frame_id=k, round=args.round, source_model=str(data["model"]))
        start = time.time()
        labelled = label(atoms)
        with open(args.out, "a") as handle:
            handle.write(frame_to_text(labelled))
            handle.flush()
            os.fsync(handle.fileno())
        print(f"frame {position + 1}/{len(order)} (configuration {k}) labelled in {time.time() - start:.1f} s",
              flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=["sample", "distort", "label"])
    parser.add_argument("--model", default=os.path.join(HERE, "..", "..", "python", "equiforce", "models",
                                                        "water-gfn2.pt"),
                        help="exported model to sample with (default: the shipped water model, = candidate 1)")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--conditions", type=int, default=24)
    parser.add_argument("--t-min", type=float, default=300.0)
    parser.add_argument("--t-max", type=float, default=450.0)
    parser.add_argument("--dt-fs", type=float, default=0.5)
    parser.add_argument("--max-ps", type=float, default=2.0)
    parser.add_argument("--every-fs", type=float, default=10.0)
    parser.add_argument("--after-fs", type=float, default=300.0)
    parser.add_argument("--keep-fs", type=float, default=400.0)
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--distort-every", type=int, default=4, help="distort: use every n-th data frame")
    parser.add_argument("--round", type=int, default=2, help="label: the 'round' written into each frame's info")
    parser.add_argument("--hold-out-every", type=int, default=0,
                        help="label: write the frames of every K-th condition (c %% K == K-1) last, a held-out tail")
    args = parser.parse_args(argv)
    {"sample": run_sample, "distort": run_distort, "label": run_label}[args.phase](args)


if __name__ == "__main__":
    main()
