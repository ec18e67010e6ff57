#!/usr/bin/env python
"""Generate a periodic liquid-water reference data set (GFN2-xTB energies and forces).

Pipeline (see README.md in this directory):

1. Classical sampling. ``n_conditions`` independent NVT trajectories of 32 flexible
   TIP3P-FB water molecules (OpenMM, ``amber14/tip3pfb.xml``, ``rigidWater=False``,
   PME, LangevinMiddleIntegrator, dt = 0.5 fs), one per (temperature, density)
   condition. Temperatures are evenly spaced over 250-450 K, densities evenly spaced
   over 0.9-1.1 g/cm^3 and randomly paired with the temperatures (a Latin-hypercube
   design drawn from ``--seed``). Each trajectory is equilibrated, then
   ``frames_per_condition`` configurations are saved at a fixed interval. All
   configurations are stored in ``<out stem>_configs.npz``, which is written after
   every finished condition (atomically), so this phase is resumable too, and once a
   condition is stored its configurations never change.

2. Labelling. Frame ``k`` of the data set is configuration ``k // n_conditions`` of
   condition ``k % n_conditions`` (conditions interleaved, so any prefix of the data
   set covers all conditions evenly). Frames are labelled in order with GFN2-xTB
   (tblite's ASE calculator, periodic) and each frame is appended to the extended XYZ
   file (energy in eV, forces in eV/Angstrom) and flushed to disk as soon as it is
   done. On restart, frames already in the file are skipped and a partially written
   last frame (killed run) is cut off, so a killed run loses at most one frame.

Usage:
    python make_dataset.py                      # label up to 1600 frames (resumes)
    python make_dataset.py --max-frames 3 --out /tmp/scratch/water.extxyz
    python make_dataset.py --check-fd           # finite-difference check of forces
    python make_dataset.py --compress           # write <out>.xz from labelled frames
"""

import os

# One thread for tblite (OpenMP/BLAS) and OpenMM: leave the other cores free.
# Must be set before numpy / tblite are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("OMP_STACKSIZE", "256M")

import argparse
import io
import json
import lzma
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from equiforce.systems import random_rotation

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "data" / "water_gfn2.extxyz"

N_MOLECULES = 32
ATOMS_PER_MOLECULE = 3
N_ATOMS = N_MOLECULES * ATOMS_PER_MOLECULE
WATER_MASS_G_MOL = 2 * 1.00794 + 15.9994  # 18.01528 g/mol
AVOGADRO = 6.02214076e23
E_ISOLATED_GFN2_EV = -137.96777594  # one gas-phase H2O (ase.build.molecule) with tblite 0.8.0; for the sanity check

# Sampling protocol. Stored in the .npz and checked on restart, so that frame k is
# always the same configuration for a given seed.
PROTOCOL = dict(
    n_molecules=N_MOLECULES,
    n_conditions=32,
    frames_per_condition=50,
    t_min_K=250.0,
    t_max_K=450.0,
    rho_min_g_cm3=0.9,
    rho_max_g_cm3=1.1,
    forcefield="amber14/tip3pfb.xml",
    rigid_water=False,
    nonbonded_method="PME",
    cutoff_nm=0.45,
    ewald_error_tolerance=5e-4,
    integrator="LangevinMiddleIntegrator",
    timestep_fs=0.5,
    friction_per_ps=1.0,
    equilibration_ps=5.0,
    sample_interval_fs=100.0,
    grid_jitter_A=0.25,
    openmm_platform="CPU",
    deterministic_forces=True,  # makes the CPU platform bitwise reproducible for a given seed
)

TBLITE_SETTINGS = dict(method="GFN2-xTB", accuracy=1.0, electronic_temperature=300.0, max_iterations=250)


# ----------------------------------------------------------------------------------
# Conditions and classical sampling
# ----------------------------------------------------------------------------------


def box_edge_A(density_g_cm3, n_molecules=N_MOLECULES):
    """Cubic box edge (Angstrom) of n_molecules waters at the given density."""
    volume_cm3 = n_molecules * WATER_MASS_G_MOL / AVOGADRO / density_g_cm3
    return (volume_cm3 * 1e24) ** (1.0 / 3.0)


def make_conditions(seed, p=PROTOCOL):
    """Temperatures evenly spaced over [t_min, t_max]; densities evenly spaced over
    [rho_min, rho_max] and randomly permuted (Latin hypercube). Returns (T, rho, seeds)."""
    n = p["n_conditions"]
    temps = np.linspace(p["t_min_K"], p["t_max_K"], n)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    rhos = np.linspace(p["rho_min_g_cm3"], p["rho_max_g_cm3"], n)[rng.permutation(n)]
    # Per-condition seed for the initial structure and the Langevin / velocity RNG.
    cond_seeds = np.array(
        [np.random.SeedSequence([seed, 1, c]).generate_state(1)[0] % (2**31 - 2) + 1 for c in range(n)],
        dtype=np.int64,
    )
    return temps, rhos, cond_seeds


def initial_positions_A(edge_A, rng, jitter_A):
    """32 waters on a jittered FCC lattice (2x2x2 cubic cells x 4 sites), random
    orientations, TIP3P-FB-like geometry. Returns (96, 3) in Angstrom, order O,H1,H2."""
    r_oh, theta = 1.0118, math.radians(108.15)
    mol = np.array(
        [
            [0.0, 0.0, 0.0],
            [r_oh * math.sin(theta / 2), 0.0, r_oh * math.cos(theta / 2)],
            [-r_oh * math.sin(theta / 2), 0.0, r_oh * math.cos(theta / 2)],
        ]
    )
    mol -= mol.mean(axis=0)
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) + 0.25
    sites = np.array([(b + [i, j, k]) / 2.0 for i in range(2) for j in range(2) for k in range(2) for b in basis])
    assert len(sites) == N_MOLECULES
    centres = sites * edge_A + rng.uniform(-jitter_A, jitter_A, size=sites.shape)
    pos = [c + mol @ random_rotation(rng).T for c in centres]
    return np.concatenate(pos, axis=0)


def build_topology(edge_A):
    from openmm import Vec3, unit
    from openmm.app import Topology, element

    top = Topology()
    chain = top.addChain()
    for _ in range(N_MOLECULES):
        res = top.addResidue("HOH", chain)
        o = top.addAtom("O", element.oxygen, res)
        h1 = top.addAtom("H1", element.hydrogen, res)
        h2 = top.addAtom("H2", element.hydrogen, res)
        top.addBond(o, h1)
        top.addBond(o, h2)
    L = edge_A * 0.1
    top.setPeriodicBoxVectors((Vec3(L, 0, 0), Vec3(0, L, 0), Vec3(0, 0, L)) * unit.nanometer)
    return top


def run_condition(temperature_K, density_g_cm3, cond_seed, p=PROTOCOL):
    """One classical trajectory. Returns (frames (n, 96, 3) Angstrom, box edge Angstrom)."""
    import openmm
    from openmm import unit
    from openmm.app import PME, ForceField

    edge = box_edge_A(density_g_cm3)
    if p["cutoff_nm"] * 10 >= edge / 2:
        raise ValueError(f"cutoff {p['cutoff_nm']} nm not < half box edge {edge / 2:.3f} A")
    rng = np.random.default_rng(int(cond_seed))
    top = build_topology(edge)
    ff = ForceField(p["forcefield"])
    system = ff.createSystem(
        top,
        nonbondedMethod=PME,
        nonbondedCutoff=p["cutoff_nm"] * unit.nanometer,
        constraints=None,
        rigidWater=p["rigid_water"],
        ewaldErrorTolerance=p["ewald_error_tolerance"],
    )
    assert system.getNumConstraints() == 0
    integrator = openmm.LangevinMiddleIntegrator(
        temperature_K * unit.kelvin, p["friction_per_ps"] / unit.picosecond, p["timestep_fs"] * unit.femtosecond
    )
    integrator.setRandomNumberSeed(int(cond_seed))
    platform = openmm.Platform.getPlatformByName(p["openmm_platform"])
    props = {"Threads": "1", "DeterministicForces": "true" if p["deterministic_forces"] else "false"}
    sim_ctx = openmm.Context(system, integrator, platform, props)
    sim_ctx.setPositions(initial_positions_A(edge, rng, p["grid_jitter_A"]) * 0.1)
    openmm.LocalEnergyMinimizer.minimize(sim_ctx, 10.0, 2000)
    sim_ctx.setVelocitiesToTemperature(temperature_K * unit.kelvin, int(cond_seed))

    dt = p["timestep_fs"]
    integrator.step(int(round(p["equilibration_ps"] * 1000 / dt)))
    stride = int(round(p["sample_interval_fs"] / dt))
    frames = np.empty((p["frames_per_condition"], N_ATOMS, 3))
    ke_sum = 0.0
    for i in range(p["frames_per_condition"]):
        integrator.step(stride)
        st = sim_ctx.getState(getPositions=True, getEnergy=True, enforcePeriodicBox=True)
        frames[i] = st.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
        ke_sum += st.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
    if not np.all(np.isfinite(frames)):
        raise RuntimeError("non-finite positions in classical MD")
    n_dof = 3 * N_ATOMS - 3  # CMMotionRemover
    t_avg = 2 * ke_sum / len(frames) / (n_dof * 0.00831446261815324)
    return frames, edge, t_avg


def _write_npz_atomic(path, data):
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **data)
    os.replace(tmp, path)


def ensure_configs(configs_path, seed, needed_conditions, log):
    """Load / extend the resumable .npz of classical configurations so that every
    condition in needed_conditions is present. Returns the dict of arrays."""
    p = PROTOCOL
    n, m = p["n_conditions"], p["frames_per_condition"]
    temps, rhos, cond_seeds = make_conditions(seed)
    meta = json.dumps(dict(protocol=p, seed=seed), sort_keys=True)
    if configs_path.exists():
        with np.load(configs_path) as z:
            data = {k: z[k] for k in z.files}
        if str(data["meta"]) != meta:
            raise SystemExit(
                f"{configs_path} was made with a different seed/protocol:\n{data['meta']}\nvs\n{meta}\n"
                "Use another --out or delete it."
            )
    else:
        data = dict(
            meta=np.array(meta),
            temperature_K=temps,
            density_g_cm3=rhos,
            condition_seed=cond_seeds,
            box_edge_A=np.array([box_edge_A(r) for r in rhos]),
            positions_A=np.full((n, m, N_ATOMS, 3), np.nan),
            md_mean_temperature_K=np.full(n, np.nan),
            done=np.zeros(n, dtype=bool),
        )
    todo = [c for c in sorted(needed_conditions) if not data["done"][c]]
    if todo:
        log(f"classical MD: {len(todo)} condition(s) to run -> {configs_path}")
    for c in todo:
        t0 = time.time()
        frames, edge, t_avg = run_condition(temps[c], rhos[c], cond_seeds[c])
        assert abs(edge - data["box_edge_A"][c]) < 1e-9
        data["positions_A"][c] = frames
        data["md_mean_temperature_K"][c] = t_avg
        data["done"][c] = True
        _write_npz_atomic(configs_path, data)
        log(
            f"  condition {c:2d}: T={temps[c]:6.1f} K rho={rhos[c]:.4f} g/cm3 L={edge:.3f} A "
            f"<T_md>={t_avg:6.1f} K ({time.time() - t0:.1f} s)"
        )
    return data


def frame_index(k, p=PROTOCOL):
    """Frame k -> (condition, sample within condition)."""
    return k % p["n_conditions"], k // p["n_conditions"]


# ----------------------------------------------------------------------------------
# Labelling
# ----------------------------------------------------------------------------------


def make_calculator():
    from tblite.ase import TBLite

    return TBLite(verbosity=0, **TBLITE_SETTINGS)


def make_atoms(data, k, seed):
    from ase import Atoms

    c, j = frame_index(k)
    L = float(data["box_edge_A"][c])
    atoms = Atoms(
        symbols=["O", "H", "H"] * N_MOLECULES,
        positions=data["positions_A"][c, j],
        cell=np.diag([L, L, L]),
        pbc=True,
    )
    atoms.info.update(
        temperature_K=float(data["temperature_K"][c]),
        density_g_cm3=float(data["density_g_cm3"][c]),
        condition_id=int(c),
        sample_id=int(j),
        frame_id=int(k),
        seed=int(seed),
    )
    return atoms


def label(atoms):
    """GFN2-xTB energy/forces; returns a copy with only a SinglePointCalculator attached.
    A fresh calculator per frame keeps the result independent of the frame order."""
    from ase.calculators.singlepoint import SinglePointCalculator

    last_err = None
    for attempt, extra in enumerate([{}, dict(mixer_damping=0.2, max_iterations=1000)]):
        calc = make_calculator()
        calc.set(**extra)
        work = atoms.copy()
        work.calc = calc
        try:
            energy = float(work.get_potential_energy())
            forces = np.array(work.get_forces())
        except Exception as err:  # SCF not converged etc.
            last_err = err
            continue
        if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
            last_err = RuntimeError("non-finite energy/forces")
            continue
        out = atoms.copy()
        out.info["scf_retry"] = attempt
        out.calc = SinglePointCalculator(out, energy=energy, forces=forces)
        return out
    raise RuntimeError(f"frame {atoms.info['frame_id']}: tblite failed: {last_err}")


def frame_to_text(atoms):
    buf = io.StringIO()
    from ase.io import write

    write(buf, atoms, format="extxyz")
    return buf.getvalue()


def scan_extxyz(path):
    """Byte offsets of complete frames in an extxyz file. Returns (n_complete, end_offset)."""
    from equiforce.data import complete_frames

    return complete_frames(path)


def existing_frames(out, seed, log):
    """Cut a partially written last frame off `out`; return list of frame ids present."""
    from ase.io import iread

    packed = out.with_name(out.name + ".xz")
    if not out.exists() and packed.exists():
        # a fresh checkout: continue from the committed, compressed frames
        log(f"unpacking the committed {packed} to {out} to resume from it")
        with lzma.open(packed, "rb") as source, open(out, "wb") as target:
            shutil.copyfileobj(source, target)
    if not out.exists():
        return []
    n, end = scan_extxyz(out)
    size = out.stat().st_size
    if end < size:
        log(f"removing {size - end} bytes of an incomplete last frame from {out}")
        with open(out, "r+b") as f:
            f.truncate(end)
    ids = []
    for a in iread(out, index=":", format="extxyz"):
        if int(a.info["seed"]) != seed:
            raise SystemExit(f"{out} holds frames made with seed {a.info['seed']}, not {seed}")
        ids.append(int(a.info["frame_id"]))
    if ids != list(range(len(ids))):
        raise SystemExit(f"{out}: frame ids are not 0..{len(ids) - 1}; refusing to append")
    return ids


def run_labelling(args, log):
    from tqdm import tqdm

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    configs_path = Path(args.configs) if args.configs else out.with_name(out.name.split(".")[0] + "_configs.npz")
    total = PROTOCOL["n_conditions"] * PROTOCOL["frames_per_condition"]
    max_frames = min(args.max_frames, total)
    if args.max_frames > total:
        log(f"--max-frames {args.max_frames} > {total} configurations in the protocol; using {total}")

    done_ids = existing_frames(out, args.seed, log)
    n_done = len(done_ids)
    needed = {frame_index(k)[0] for k in range(max_frames)}
    data = ensure_configs(configs_path, args.seed, needed, log)
    if n_done:
        # Consistency: the last stored frame must be the configuration the npz gives.
        from ase.io import read

        last = read(out, index=-1, format="extxyz")
        ref = make_atoms(data, n_done - 1, args.seed)
        if np.abs(last.positions - ref.positions).max() > 1e-6:
            raise SystemExit(f"{out}: last frame does not match {configs_path}; refusing to append")
    log(f"{n_done} frame(s) already labelled in {out}; target {max_frames}")
    if n_done >= max_frames:
        return
    interactive = sys.stderr.isatty()
    bar = tqdm(
        total=max_frames,
        initial=n_done,
        unit="frame",
        desc="GFN2-xTB",
        mininterval=1 if interactive else 30,
        smoothing=0.05,
        dynamic_ncols=interactive,
        ncols=None if interactive else 100,
        file=sys.stderr,
    )
    t_start, n_new = time.time(), 0
    with open(out, "a") as f:
        for k in range(n_done, max_frames):
            labelled = label(make_atoms(data, k, args.seed))
            e_mol = labelled.get_potential_energy() / N_MOLECULES
            if not (E_ISOLATED_GFN2_EV - 1.0 < e_mol < E_ISOLATED_GFN2_EV + 0.5):
                log(f"WARNING frame {k}: energy per molecule {e_mol:.4f} eV looks odd")
            f.write(frame_to_text(labelled))
            f.flush()
            os.fsync(f.fileno())
            n_new += 1
            bar.update(1)
            if not interactive and (n_new % args.log_every == 0 or k == max_frames - 1):
                rate = (time.time() - t_start) / n_new
                eta = rate * (max_frames - k - 1)
                bar.write(
                    f"[{time.strftime('%H:%M:%S')}] {k + 1}/{max_frames} frames, {rate:.2f} s/frame, "
                    f"ETA {eta / 3600:.2f} h, last E/mol {e_mol:.4f} eV"
                )
    bar.close()
    if n_new:
        log(f"labelled {n_new} frame(s) in {time.time() - t_start:.1f} s "
            f"({(time.time() - t_start) / n_new:.2f} s/frame); {max_frames} in {out}")


# ----------------------------------------------------------------------------------
# Finite-difference check and compression
# ----------------------------------------------------------------------------------


def check_fd(args, log, n_components=9, h=1e-3):
    """Central finite difference of the tblite energy vs its analytic forces for a few
    Cartesian components of frame 0."""
    out = Path(args.out)
    configs_path = Path(args.configs) if args.configs else out.with_name(out.name.split(".")[0] + "_configs.npz")
    data = ensure_configs(configs_path, args.seed, {frame_index(0)[0]}, log)
    atoms = make_atoms(data, 0, args.seed)
    calc = make_calculator()
    atoms.calc = calc
    f_ana = atoms.get_forces().copy()
    rng = np.random.default_rng(args.seed)
    comps = [(int(i), int(d)) for i, d in zip(rng.choice(N_ATOMS, n_components, replace=False), rng.integers(0, 3, n_components))]
    rows = []
    for i, d in comps:
        e = []
        for s in (+1, -1):
            a = atoms.copy()
            a.positions[i, d] += s * h
            a.calc = make_calculator()
            e.append(a.get_potential_energy())
        f_num = -(e[0] - e[1]) / (2 * h)
        rows.append((i, "xyz"[d], f_ana[i, d], f_num))
        log(f"  atom {i:2d} ({atoms.get_chemical_symbols()[i]}) {'xyz'[d]}: analytic {f_ana[i, d]: .6f}  "
            f"FD {f_num: .6f}  diff {f_ana[i, d] - f_num: .2e} eV/A")
    diffs = np.array([r[2] - r[3] for r in rows])
    mags = np.array([abs(r[2]) for r in rows])
    log(f"FD check (h={h} A, {len(rows)} components): max |diff| {np.abs(diffs).max():.2e} eV/A, "
        f"max relative {np.max(np.abs(diffs) / np.maximum(mags, 1e-3)):.2e}")
    return np.abs(diffs).max()


def compress(args, log):
    """Write <out>.xz holding every complete frame labelled so far."""
    out = Path(args.out)
    xz = Path(args.compress_out) if args.compress_out else out.with_name(out.name + ".xz")
    n, end = scan_extxyz(out)
    with open(out, "rb") as f:
        raw = f.read(end)
    tmp = xz.with_name(xz.name + ".tmp")
    with lzma.open(tmp, "wb", preset=9 | lzma.PRESET_EXTREME) as g:
        g.write(raw)
    os.replace(tmp, xz)
    size = xz.stat().st_size
    log(f"wrote {xz}: {n} frames, {size / 1e6:.2f} MB ({len(raw) / 1e6:.2f} MB uncompressed)")
    if size > 20e6:
        log("WARNING: compressed file exceeds 20 MB")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="extended XYZ output (appended to; default %(default)s)")
    ap.add_argument("--configs", default=None, help="classical configurations .npz (default: <out stem>_configs.npz)")
    ap.add_argument("--seed", type=int, default=2024, help="sampling seed (default %(default)s)")
    ap.add_argument("--max-frames", type=int, default=1600, help="label frames 0..N-1 (default %(default)s)")
    ap.add_argument("--log-every", type=int, default=25, help="log line every N frames when not on a terminal")
    ap.add_argument("--check-fd", action="store_true", help="finite-difference check of frame 0 forces, then exit")
    ap.add_argument("--fd-step", type=float, default=1e-3, help="displacement (Angstrom) for --check-fd")
    ap.add_argument("--compress", action="store_true", help="write <out>.xz from the frames labelled so far, then exit")
    ap.add_argument("--compress-out", default=None, help="path of the .xz (default <out>.xz)")
    args = ap.parse_args(argv)

    def log(msg):
        print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    if args.compress:
        compress(args, log)
        return
    if args.check_fd:
        check_fd(args, log, h=args.fd_step)
        return
    import importlib.metadata as md

    log(f"make_dataset: seed={args.seed} out={args.out} max_frames={args.max_frames} "
        f"tblite={md.version('tblite')} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    run_labelling(args, log)


if __name__ == "__main__":
    main()
