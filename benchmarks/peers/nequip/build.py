"""Build the `nequip-openmmml` peer model used by the speed benchmark.

Steps (each skipped when its output exists, unless --force):
  1. copy the first 40 frames of recipes/water/data/water_gfn2.extxyz to runs/peers/nequip/water40.extxyz
  2. nequip-train -cp benchmarks/peers/nequip -cn water  (1 epoch, CPU) -> runs/peers/nequip/train/last.ckpt
  3. nequip-package build last.ckpt runs/peers/nequip/water.nequip.zip
  4. load the package with nequip's load_saved_model and print the parameter count

Run from anywhere:  .venv/bin/python benchmarks/peers/nequip/build.py [--force] [--threads 1]
Needs `nequip==0.19.1` (requirements-bench.txt). The weights are only one epoch old: speed only.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SOURCE = REPO / "recipes" / "water" / "data" / "water_gfn2.extxyz"
OUT = REPO / "runs" / "peers" / "nequip"
DATA = OUT / "water40.extxyz"
TRAIN_DIR = OUT / "train"
CKPT = TRAIN_DIR / "last.ckpt"
PACKAGE = OUT / "water.nequip.zip"
N_FRAMES = 40


def _bin(name: str) -> str:
    """The console script next to this interpreter (the project venv), else whatever is on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def _run(cmd: list[str], env: dict) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


def extract_frames(force: bool) -> None:
    if DATA.exists() and not force:
        print(f"[skip] {DATA.relative_to(REPO)} exists")
        return
    import ase.io

    from equiforce.data import read_atoms

    # The committed data set is compressed; a decompressed copy (made by the labelling script) is read if present.
    # The source file may be growing (a labelling job appends to it): read only the first N frames.
    source = SOURCE if SOURCE.exists() else SOURCE.with_name(SOURCE.name + ".xz")
    frames = read_atoms(str(source), f":{N_FRAMES}")
    if len(frames) != N_FRAMES:
        raise RuntimeError(f"expected {N_FRAMES} frames in {SOURCE}, got {len(frames)}")
    tmp = DATA.with_suffix(".tmp.extxyz")
    ase.io.write(str(tmp), frames, format="extxyz")
    tmp.replace(DATA)
    print(f"wrote {len(frames)} frames ({len(frames[0])} atoms each) to {DATA.relative_to(REPO)}")


def train(force: bool, env: dict) -> None:
    if CKPT.exists() and not force:
        print(f"[skip] {CKPT.relative_to(REPO)} exists")
        return
    if TRAIN_DIR.exists():
        shutil.rmtree(TRAIN_DIR)
    _run(
        [
            _bin("nequip-train"),
            "-cp", str(HERE),
            "-cn", "water",
            f"data_file={DATA}",
            f"hydra.run.dir={TRAIN_DIR}",
        ],
        env,
    )
    if not CKPT.exists():
        raise RuntimeError(f"nequip-train finished but {CKPT} is missing")


def package(force: bool, env: dict) -> None:
    if PACKAGE.exists() and not force:
        print(f"[skip] {PACKAGE.relative_to(REPO)} exists")
        return
    if PACKAGE.exists():
        PACKAGE.unlink()
    _run([_bin("nequip-package"), "build", str(CKPT), str(PACKAGE)], env)


def count_parameters() -> int:
    from nequip.model.saved_models.load_utils import load_saved_model
    from nequip.utils.global_state import set_global_state

    set_global_state()
    model = load_saved_model(str(PACKAGE))
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="redo every step even if its output exists")
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads for training (default 1)")
    args = parser.parse_args(argv)

    OUT.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    env.setdefault("CUDA_VISIBLE_DEVICES", "")  # the trainer is pinned to CPU in water.yaml anyway

    import torch

    torch.set_num_threads(args.threads)
    extract_frames(args.force)
    train(args.force, env)
    package(args.force, env)
    n = count_parameters()
    print(f"package: {PACKAGE.relative_to(REPO)}")
    print(f"parameters: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
