"""Training on 2 processes (torchrun, gloo, CPU) against 1 process: the loss curves and their difference.

    nice -n 5 .venv/bin/python benchmarks/train_ddp.py [--frames 120] [--epochs 6] [--work runs/bench/train_ddp]

For float64 and float32, trains the same configuration (water frames of recipes/water/data/water_gfn2.extxyz.xz,
a smaller model than the shipped one, global batch 5 so that the last batch holds 1 frame) with
``equiforce train`` in one process and with ``torchrun --standalone --nproc_per_node 2 -m equiforce train``, and
writes benchmarks/results/train_ddp.json (per-epoch training and validation losses of each run, the largest
absolute and relative differences between the two, the wall time of each run) and train_ddp.png (curves
overlaid, and the relative difference per epoch). Each run's directory keeps its results: rerunning the command
reuses finished runs (delete --work to start afresh). Wall times are indicative only (2 shared CPU cores).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "recipes", "water", "data", "water_gfn2.extxyz.xz")
RESULTS = os.path.join(ROOT, "benchmarks", "results")
MODEL = dict(cutoff=4.0, lmax=1, num_features=16, num_layers=2, num_basis=8, radial_hidden=32, radial_layers=2)
CURVES = ("train_loss", "val_loss", "val_energy_mae", "val_force_mae")


def run_config(frames: int, epochs: int, dtype: str, output_dir: str) -> dict:
    return dict(data=f"{DATA}@:{frames}", output_dir=output_dir, split=[0.8, 0.1, 0.1], seed=0, model=dict(MODEL),
                energy_weight=100.0, force_weight=1.0, batch_size=5, lr=5e-3, schedule="cosine", min_lr=1e-5,
                ema_decay=0.99, max_epochs=epochs, patience=None, progress=False, dtype=dtype, device="cpu")


def train_once(work: str, frames: int, epochs: int, dtype: str, world_size: int) -> dict:
    """Train (or reuse a finished run of) one case; returns its history and wall time (s)."""
    directory = os.path.join(work, f"{dtype}_np{world_size}")
    done = os.path.join(directory, "wall_time.json")
    if os.path.exists(done) and os.path.exists(os.path.join(directory, "metrics.json")):
        wall = json.load(open(done))["seconds"]
    else:
        os.makedirs(directory, exist_ok=True)
        config_path = os.path.join(directory, "config.yaml")
        with open(config_path, "w") as handle:
            yaml.safe_dump(run_config(frames, epochs, dtype, directory), handle)
        if world_size == 1:
            command = [sys.executable, "-m", "equiforce", "train", config_path, "--restart"]
        else:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                       str(world_size), "-m", "equiforce", "train", config_path, "--restart"]
        env = dict(os.environ, OMP_NUM_THREADS="1")  # torchrun sets 1 per process; the same for one process
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT, env=env)
        wall = time.perf_counter() - start
        with open(done, "w") as handle:
            json.dump({"seconds": wall}, handle)
    history = json.load(open(os.path.join(directory, "history.json")))
    return {"world_size": world_size, "dtype": dtype, "wall_seconds": wall,
            "history": {key: [row[key] for row in history] for key in ("epoch",) + CURVES}}


def compare(single: dict, ddp: dict) -> dict:
    """Largest absolute and relative difference per curve, over the epochs."""
    result = {}
    for key in CURVES:
        a, b = single["history"][key], ddp["history"][key]
        absolute = [abs(x - y) for x, y in zip(a, b)]
        relative = [abs(x - y) / abs(x) for x, y in zip(a, b)]
        result[key] = {"max_abs": max(absolute), "max_rel": max(relative), "rel_per_epoch": relative}
    return result


def plot(payload: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, differences) = plt.subplots(1, 2, figsize=(11, 4))
    for dtype, colour in (("float64", "C0"), ("float32", "C1")):
        runs = {run["world_size"]: run for run in payload["runs"] if run["dtype"] == dtype}
        epochs = runs[1]["history"]["epoch"]
        for world, style in ((1, "-"), (2, "--")):
            for key, marker in (("train_loss", "o"), ("val_loss", "s")):
                curves.plot(epochs, runs[world]["history"][key], style, marker=marker, color=colour, ms=4,
                            label=f"{dtype} {key} np={world}")
        for key, marker in (("train_loss", "o"), ("val_loss", "s")):
            relative = [max(v, 1e-18) for v in payload["differences"][dtype][key]["rel_per_epoch"]]
            differences.semilogy(epochs, relative, marker=marker, color=colour, label=f"{dtype} {key}")
    curves.set_yscale("log")
    curves.set_xlabel("epoch")
    curves.set_ylabel("loss (eV², weighted)")
    curves.set_title("1 process (solid) and 2 processes (dashed)")
    curves.legend(fontsize=7)
    differences.set_xlabel("epoch")
    differences.set_ylabel("|loss(np=2) - loss(np=1)| / loss(np=1)")
    differences.set_title("relative difference (exact zeros drawn at 1e-18)")
    differences.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120, help="first frames of the water data")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--work", default=os.path.join(ROOT, "runs", "bench", "train_ddp"))
    parser.add_argument("--out", default=os.path.join(RESULTS, "train_ddp.json"))
    args = parser.parse_args()
    payload = {
        "description": "equiforce train in 1 process vs torchrun --nproc_per_node 2 (gloo, CPU), same config",
        "frames": args.frames, "epochs": args.epochs, "model": MODEL, "batch_size_global": 5,
        "config_example": run_config(args.frames, args.epochs, "float64", "<work>/float64_npN"),
        "note": "wall times indicative only: 2 CPU cores shared with other jobs",
        "runs": [], "differences": {}, "wall_time_ratio_np2_over_np1": {},
    }
    for dtype in ("float64", "float32"):
        runs = {}
        for world in (1, 2):
            runs[world] = train_once(args.work, args.frames, args.epochs, dtype, world)
            payload["runs"].append(runs[world])
            os.makedirs(os.path.dirname(args.out), exist_ok=True)
            with open(args.out, "w") as handle:  # results as they come
                json.dump(payload, handle, indent=1)
        payload["differences"][dtype] = compare(runs[1], runs[2])
        payload["wall_time_ratio_np2_over_np1"][dtype] = runs[2]["wall_seconds"] / runs[1]["wall_seconds"]
        with open(args.out, "w") as handle:
            json.dump(payload, handle, indent=1)
    plot(payload, os.path.splitext(args.out)[0] + ".png")
    for dtype, curves in payload["differences"].items():
        print(dtype, {key: (f"{v['max_abs']:.3g}", f"{v['max_rel']:.3g}") for key, v in curves.items()})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
