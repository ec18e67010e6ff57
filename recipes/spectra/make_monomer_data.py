#!/usr/bin/env python
"""GFN2-xTB reference data for one water molecule: energy, forces, dipole and polarizability.

Pipeline (see README.md in this directory):

1. Sampling. One Langevin trajectory of an isolated H2O per temperature (``TEMPERATURES_K``, 300-500 K),
   driven by GFN2-xTB itself through ASE (tblite's ASE calculator, dt = 0.5 fs, friction 0.01/fs), equilibrated
   for 1 ps, then one configuration every 25 fs. Langevin MD rather than normal-mode sampling because the
   spectra are later computed from classical MD: the data should cover the same anharmonic, rotating,
   stretch-bend-coupled configurations a classical trajectory visits, not a harmonic Gaussian around the minimum;
   the hotter trajectories (up to 500 K) cover the tails of a 300 K run. All configurations go to
   ``<out stem>_configs.npz``, written after every finished temperature (resumable).

2. Labelling. Frame ``k`` is configuration ``k // n_temperatures`` of temperature ``k % n_temperatures``
   (interleaved, so any prefix covers all temperatures). Each frame is labelled with tblite's Python interface
   (atomic units, converted here with ``ase.units``), non-periodic:

   - energy (eV), forces (eV/Å) and dipole μ (e·Å; tblite returns e·Bohr) at zero field;
   - polarizability α_ij = ∂μ_i/∂F_j (Å³) by central differences in a uniform field F = ±h e_j, h =
     ``FIELD_STEP_AU`` Hartree/(e·Bohr). tblite's field term is E(F) = E(0) - μ·F (checked by ``--check-field``),
     so α is positive; in atomic units α is in Bohr³ (4πε₀ = 1), converted to Å³ with ``Bohr**3``.

   Frames are appended to the extended XYZ file one at a time and flushed (``dipole`` and ``polarizability``,
   9 values, in ``atoms.info``; energy and forces as calculator results), so a killed run loses at most one
   frame; frames already in the file are skipped on restart.

Usage:
    python make_monomer_data.py                   # sample and label 2000 frames (resumes)
    python make_monomer_data.py --check-field     # α of the optimised monomer at several field steps
    python make_monomer_data.py --compress        # write <out>.xz
"""

import os

# One thread for tblite (OpenMP/BLAS); set before numpy / tblite are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import io
import json
import lzma
import sys
import time
from pathlib import Path

import numpy as np
from ase.units import Bohr, Hartree, fs

from equiforce.data import complete_frames, cut_incomplete_frame

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "data" / "water_monomer_gfn2.extxyz"

TEMPERATURES_K = (300.0, 350.0, 400.0, 450.0, 500.0)
PROTOCOL = dict(
    temperatures_K=list(TEMPERATURES_K),
    frames_per_temperature=400,
    timestep_fs=0.5,
    friction_per_fs=0.01,
    equilibration_ps=1.0,
    sample_interval_fs=25.0,
    method="GFN2-xTB",
    accuracy=1.0,  # of the sampling MD; the labels use LABEL_ACCURACY
)
#: Field step of the central differences, Hartree/(e·Bohr) (≈ 0.51 V/Å); α is stable to 1e-5 relative
#: between 5e-4 and 2e-3 (``--check-field``).
FIELD_STEP_AU = 1e-3
#: tblite accuracy of the labels (0.01: SCF converged 100x tighter than the default 1.0 used for the sampling
#: MD). At 1.0 the SCF noise in μ(±F) gives α an asymmetry up to 1e-3 Å³; at 0.01 it is ~1e-5 Å³.
LABEL_ACCURACY = 0.01


# ---------------------------------------------------------------------------------------------------------------
# GFN2-xTB through tblite's interface (atomic units inside, Å / eV / e·Å / Å³ outside)
# ---------------------------------------------------------------------------------------------------------------


def singlepoint(numbers, positions_A, field_au=None, accuracy=LABEL_ACCURACY):
    """tblite result dict of one open structure (positions [N, 3] Å; field [3] Hartree/(e·Bohr) or None)."""
    from tblite.interface import Calculator

    calc = Calculator(PROTOCOL["method"], np.asarray(numbers), np.asarray(positions_A) / Bohr)
    calc.set("verbosity", 0)
    calc.set("accuracy", accuracy)
    if field_au is not None:
        calc.add("electric-field", [float(x) for x in field_au])  # the cffi binding wants a list, not an array
    return calc.singlepoint()


def label_frame(numbers, positions_A, step_au=FIELD_STEP_AU):
    """Energy (eV), forces [N, 3] (eV/Å), dipole [3] (e·Å) and polarizability [3, 3] (Å³) of one structure."""
    res = singlepoint(numbers, positions_A)
    alpha = np.zeros((3, 3))  # Bohr³: alpha[i, j] = dμ_i/dF_j
    for j in range(3):
        field = np.zeros(3)
        field[j] = step_au
        plus = singlepoint(numbers, positions_A, field)["dipole"]  # [3] e·Bohr
        minus = singlepoint(numbers, positions_A, -field)["dipole"]
        alpha[:, j] = (plus - minus) / (2.0 * step_au)
    asymmetry = np.abs(alpha - alpha.T).max() * Bohr**3  # Å³: finite-difference and SCF noise, ~1e-5
    if asymmetry > 1e-3:
        raise RuntimeError(f"finite-field polarizability is not symmetric: max |α - αᵀ| = {asymmetry:.2e} Å³")
    alpha = 0.5 * (alpha + alpha.T)
    return dict(
        energy=float(res["energy"]) * Hartree,
        forces=-np.asarray(res["gradient"]) * Hartree / Bohr,
        dipole=np.asarray(res["dipole"]) * Bohr,
        polarizability=alpha * Bohr**3,
        polarizability_asymmetry=float(asymmetry),
    )


# ---------------------------------------------------------------------------------------------------------------
# Sampling: Langevin MD with GFN2-xTB through ASE
# ---------------------------------------------------------------------------------------------------------------


def equilibrium_monomer():
    """H2O relaxed with GFN2-xTB (BFGS to 1e-4 eV/Å), as ase.Atoms (open)."""
    from ase.build import molecule
    from ase.optimize import BFGS
    from tblite.ase import TBLite

    atoms = molecule("H2O")
    atoms.calc = TBLite(method=PROTOCOL["method"], accuracy=PROTOCOL["accuracy"], verbosity=0)
    BFGS(atoms, logfile=None).run(fmax=1e-4)
    atoms.calc = None
    return atoms


def sample_temperature(temperature_K, seed):
    """Configurations [frames_per_temperature, 3, 3] Å of one Langevin trajectory, and its mean temperature (K)."""
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from tblite.ase import TBLite

    p = PROTOCOL
    rng = np.random.default_rng(seed)
    atoms = equilibrium_monomer()
    atoms.calc = TBLite(method=p["method"], accuracy=p["accuracy"], verbosity=0)
    atoms.set_constraint(FixCom())  # fixcm=True of ASE's Langevin overheats a 3-atom system (ASE warns)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms)
    dyn = Langevin(atoms, timestep=p["timestep_fs"] * fs, temperature_K=temperature_K,
                   friction=p["friction_per_fs"] / fs, fixcm=False, rng=rng)
    dyn.run(int(round(p["equilibration_ps"] * 1000 / p["timestep_fs"])))
    stride = int(round(p["sample_interval_fs"] / p["timestep_fs"]))
    frames = np.empty((p["frames_per_temperature"], 3, 3))
    temperatures = np.empty(p["frames_per_temperature"])
    for i in range(p["frames_per_temperature"]):
        dyn.run(stride)
        frames[i] = atoms.get_positions()
        temperatures[i] = atoms.get_temperature()  # kinetic, 3N - 3 = 6 degrees of freedom (FixCom)
    return frames, float(temperatures.mean())


def ensure_configs(path, seed, log):
    """Load or complete the resumable .npz of configurations; returns its arrays as a dict."""
    p = PROTOCOL
    n, m = len(p["temperatures_K"]), p["frames_per_temperature"]
    meta = json.dumps(dict(protocol=p, seed=seed), sort_keys=True)
    if path.exists():
        with np.load(path) as z:
            data = {k: z[k] for k in z.files}
        if str(data["meta"]) != meta:
            raise SystemExit(f"{path} was made with another seed/protocol:\n{data['meta']}\nvs\n{meta}")
    else:
        data = dict(meta=np.array(meta), temperature_K=np.array(p["temperatures_K"]),
                    numbers=np.array([8, 1, 1]), positions_A=np.full((n, m, 3, 3), np.nan),
                    md_mean_temperature_K=np.full(n, np.nan), done=np.zeros(n, dtype=bool))
    for c in range(n):
        if data["done"][c]:
            continue
        start = time.time()
        seed_c = int(np.random.SeedSequence([seed, c]).generate_state(1)[0])
        frames, t_mean = sample_temperature(float(data["temperature_K"][c]), seed_c)
        data["positions_A"][c], data["md_mean_temperature_K"][c], data["done"][c] = frames, t_mean, True
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **data)
        os.replace(tmp, path)
        log(f"  sampled {m} configurations at {data['temperature_K'][c]:.0f} K (mean T {t_mean:.1f} K) "
            f"in {time.time() - start:.1f} s")
    return data


# ---------------------------------------------------------------------------------------------------------------
# Labelling, resumable
# ---------------------------------------------------------------------------------------------------------------


def frame_atoms(data, k, seed):
    """ase.Atoms of frame k (open boundaries) with its provenance in info."""
    from ase import Atoms

    n = len(data["temperature_K"])
    c, j = k % n, k // n
    atoms = Atoms(numbers=data["numbers"], positions=data["positions_A"][c, j], pbc=False)
    atoms.info.update(temperature_K=float(data["temperature_K"][c]), sample_id=int(j), frame_id=int(k),
                      seed=int(seed))
    return atoms


def frame_text(atoms, labels):
    """Extended XYZ text of one labelled frame."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    out = atoms.copy()
    out.info["dipole"] = labels["dipole"]  # [3] e·Å
    out.info["polarizability"] = labels["polarizability"].reshape(9)  # [9] Å³, row-major (α is symmetric)
    out.info["polarizability_asymmetry"] = labels["polarizability_asymmetry"]  # Å³, max |α - αᵀ| before symmetrising
    out.calc = SinglePointCalculator(out, energy=labels["energy"], forces=labels["forces"])
    buffer = io.StringIO()
    write(buffer, out, format="extxyz")
    return buffer.getvalue()


def run_labelling(args, log):
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    packed = out.with_name(out.name + ".xz")
    if not out.exists() and packed.exists():
        log(f"unpacking {packed} to resume from it")
        with lzma.open(packed, "rb") as source, open(out, "wb") as target:
            target.write(source.read())
    n_done = 0
    if out.exists():
        n_done, cut = cut_incomplete_frame(str(out))
        if cut:
            log(f"cut an incomplete last frame off {out}")
    data = ensure_configs(out.with_name(out.name.split(".")[0] + "_configs.npz"), args.seed, log)
    total = len(data["temperature_K"]) * PROTOCOL["frames_per_temperature"]
    target = min(args.max_frames, total)
    if n_done:
        from ase.io import read

        last = read(out, index=-1, format="extxyz")
        if int(last.info["seed"]) != args.seed or int(last.info["frame_id"]) != n_done - 1 or \
                np.abs(last.positions - frame_atoms(data, n_done - 1, args.seed).positions).max() > 1e-6:
            raise SystemExit(f"{out}: the last frame does not match the configurations; refusing to append")
    log(f"{n_done} frame(s) already labelled in {out}; target {target}")
    start = time.time()
    with open(out, "a") as handle:
        for k in range(n_done, target):
            atoms = frame_atoms(data, k, args.seed)
            handle.write(frame_text(atoms, label_frame(atoms.numbers, atoms.positions)))
            handle.flush()
            if (k + 1) % 250 == 0 or k + 1 == target:
                log(f"  {k + 1}/{target} frames ({(time.time() - start) / (k + 1 - n_done) * 1e3:.1f} ms/frame)")
        os.fsync(handle.fileno())


def check_field(log):
    """α of the GFN2-optimised monomer at several field steps: symmetric, positive, step-independent."""
    atoms = equilibrium_monomer()
    log(f"label accuracy {LABEL_ACCURACY}")
    res0 = singlepoint(atoms.numbers, atoms.positions)
    field = np.array([0.0, 0.0, FIELD_STEP_AU])
    delta_e = singlepoint(atoms.numbers, atoms.positions, field)["energy"] - res0["energy"]  # Hartree
    log(f"E(F) - E(0) = {delta_e:.6e} Eh; -μ·F = {-res0['dipole'] @ field:.6e} Eh (same sign: E = E0 - μ·F)")
    log(f"μ = {np.round(res0['dipole'] * Bohr, 5).tolist()} e·Å")
    for step in (2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3):
        labels = label_frame(atoms.numbers, atoms.positions, step)
        alpha = labels["polarizability"]
        log(f"h = {step:.1e} au: α eigenvalues {np.round(np.linalg.eigvalsh(alpha), 6).tolist()} Å³, "
            f"mean {np.trace(alpha) / 3:.6f} Å³, max |α - αᵀ| {labels['polarizability_asymmetry']:.1e} Å³")


def compress(args, log):
    out = Path(args.out)
    n, end = complete_frames(str(out))
    with open(out, "rb") as handle:
        raw = handle.read(end)
    packed = out.with_name(out.name + ".xz")
    with lzma.open(packed.with_name(packed.name + ".tmp"), "wb", preset=9 | lzma.PRESET_EXTREME) as handle:
        handle.write(raw)
    os.replace(packed.with_name(packed.name + ".tmp"), packed)
    log(f"wrote {packed}: {n} frames, {packed.stat().st_size / 1e6:.2f} MB")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="extended XYZ file (appended to)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--max-frames", type=int, default=2000, help="label frames 0..N-1")
    parser.add_argument("--check-field", action="store_true", help="field-step check of α, then exit")
    parser.add_argument("--compress", action="store_true", help="write <out>.xz, then exit")
    args = parser.parse_args(argv)

    def log(message):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    if args.check_field:
        check_field(log)
    elif args.compress:
        compress(args, log)
    else:
        import importlib.metadata

        log(f"seed {args.seed}, tblite {importlib.metadata.version('tblite')}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
        run_labelling(args, log)


if __name__ == "__main__":
    main()
