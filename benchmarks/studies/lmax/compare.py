#!/usr/bin/env python
"""Invariant vs equivariant: lmax = 0, 1, 2 (3) on the water data at matched parameter counts and budget.

For each lmax the number of features is chosen so that the model has (about) as many parameters as the
reference (lmax 1, 32 features: the shipped water model), and every model is trained with the same settings
and the same number of epochs as ``recipes/water/train_water.yaml`` unless overridden (``--epochs``). Then,
for each trained model (exported, float32):

- test-split errors (energy meV/atom, forces meV/Å) with the exported file (``equiforce.evaluate``);
- ms/step of the TorchForce in OpenMM (CPU platform, 32 water molecules), the same process for all lmax;
- NVE drift at 0.5 fs (``equiforce.bench.run_nve``; 32 molecules from a TIP3P-FB start after 1 ps of Langevin
  equilibration with the model).

Results: ``benchmarks/results/lmax.json`` (rewritten after every stage), ``lmax.md`` and ``lmax.png``. Every
training run resumes where it stopped (``runs/lmax/lmax<L>/last.ckpt``), and finished stages are not redone,
so rerun the same command until it reports all stages done.

Usage (from the repository root)::

    python benchmarks/studies/lmax/compare.py                       # lmax 0 1 2, the water config's epochs
    python benchmarks/studies/lmax/compare.py --lmax 0 1 2 3 --epochs 20 --max-minutes 150

On two cores, train in parallel processes first (``--train-only``, one lmax each, one thread each), then run
the same command without ``--train-only`` for the test errors, timings and NVE of all of them in one process::

    OMP_NUM_THREADS=1 python benchmarks/studies/lmax/compare.py --lmax 2 --epochs 8 --train-only &
    OMP_NUM_THREADS=1 python benchmarks/studies/lmax/compare.py --lmax 0 1 --epochs 8 --train-only &
    wait; OMP_NUM_THREADS=1 python benchmarks/studies/lmax/compare.py --epochs 8
"""
import argparse
import json
import math
import os
import sys
import time
from typing import Dict, List

import yaml

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
WATER_CONFIG = os.path.join(REPOSITORY, "recipes", "water", "train_water.yaml")
RESULTS = os.path.join(REPOSITORY, "benchmarks", "results")


def parameter_count(model_settings: Dict, lmax: int, num_features: int) -> int:
    from equiforce.nn import EquivariantPotential, ModelConfig

    settings = dict(model_settings, lmax=lmax, num_features=num_features)
    model = EquivariantPotential(ModelConfig(elements=["H", "O"], **settings))
    return sum(p.numel() for p in model.parameters())


def matched_features(model_settings: Dict, lmax: int, target: int, low: int = 2, high: int = 256) -> int:
    """The num_features whose parameter count is closest to ``target`` (the count grows with num_features)."""
    while high - low > 1:
        middle = (low + high) // 2
        if parameter_count(model_settings, lmax, middle) < target:
            low = middle
        else:
            high = middle
    return min((low, high), key=lambda f: abs(parameter_count(model_settings, lmax, f) - target))


def _write(result: Dict) -> None:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "lmax.json")
    with open(path + ".tmp", "w") as handle:
        json.dump(result, handle, indent=1)
        handle.write("\n")
    os.replace(path + ".tmp", path)


def _drift_cell(drift) -> str:
    if not drift:
        return " |"
    if drift.get("failed"):
        return f" failed: {drift['failed']} |"
    return f"{drift['drift_kT_per_ns_per_dof']:+.3g} ± {drift['drift_stderr_kT_per_ns_per_dof']:.2g} |"


def table(result: Dict) -> str:
    lines = ["| lmax | features | parameters | epochs | train h | test E MAE (meV/atom) | test F MAE (meV/Å) | "
             "ms/step (OpenMM CPU, 96 atoms) | NVE drift 0.5 fs (kT/ns/dof) |", "|" + "---|" * 9]
    for entry in result["models"]:
        drift = entry.get("nve")
        lines.append(
            f"| {entry['lmax']} | {entry['num_features']} | {entry['parameters']} | {entry.get('epochs', '')} | "
            f"{entry.get('train_hours', float('nan')):.2f} | {entry.get('test', {}).get('energy_mae', float('nan')):.3f} | "
            f"{entry.get('test', {}).get('force_mae', float('nan')):.1f} | {entry.get('ms_per_step', float('nan')):.1f} | "
            + _drift_cell(drift))
    return "\n".join(lines)


def plot(result: Dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [e for e in result["models"] if "test" in e and "ms_per_step" in e]
    if not done:
        return
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for entry in done:
        label = f"lmax {entry['lmax']} ({entry['num_features']} f)"
        axes[0].scatter(entry["ms_per_step"], entry["test"]["force_mae"], s=40, label=label)
        axes[1].scatter(entry["ms_per_step"], entry["test"]["energy_mae"], s=40, label=label)
    axes[0].set_ylabel("test force MAE (meV/Å)")
    axes[1].set_ylabel("test energy MAE (meV/atom)")
    for axis in axes:
        axis.set_xlabel("ms/step in OpenMM (CPU, 96 atoms)")
        axis.legend(fontsize=8)
    figure.suptitle("Price and value of angular features (matched parameters, same epochs)")
    figure.tight_layout()
    figure.savefig(os.path.join(RESULTS, "lmax.png"), dpi=120)
    plt.close(figure)


def _train(base: Dict, lmax: int, num_features: int, epochs: int, run_dir: str, deadline: float) -> bool:
    """Train and export one model (resuming ``run_dir``); False when the deadline stopped it first."""
    from equiforce.train import TrainConfig, Trainer

    model_file = os.path.join(run_dir, f"water-lmax{lmax}.pt")
    if os.path.exists(model_file):
        return True
    settings = dict(base, output_dir=run_dir, max_epochs=epochs, patience=None, export=model_file, progress=True,
                    model=dict(base["model"], lmax=lmax, num_features=num_features))
    trainer = Trainer(TrainConfig(**settings))
    while not trainer.finished and time.time() < deadline:
        trainer.run_epoch()
    if not trainer.finished:
        print(f"lmax {lmax}: stopped at epoch {trainer.epoch}/{epochs} (time limit); rerun to continue")
        return False
    trainer.finish()
    return True


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lmax", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: max_epochs of the water config")
    parser.add_argument("--reference-features", type=int, default=32, help="lmax 1 features that set the budget")
    parser.add_argument("--nve-ps", type=float, default=5.0)
    parser.add_argument("--max-minutes", type=float, default=None, help="stop cleanly (between epochs) after this")
    parser.add_argument("--work", default=os.path.join(REPOSITORY, "runs", "lmax"))
    parser.add_argument("--train-only", action="store_true",
                        help="train (and export) the listed lmax, write nothing to the results; for parallel runs")
    args = parser.parse_args(argv)
    deadline = time.time() + 60 * args.max_minutes if args.max_minutes else math.inf

    import torch

    from equiforce.bench import NVEProtocol, run_nve, run_speed
    from equiforce.data import split_indices
    from equiforce.evaluate import evaluate_model

    with open(WATER_CONFIG) as handle:
        base = yaml.safe_load(handle)
    base["data"] = os.path.join(REPOSITORY, base["data"])
    epochs = args.epochs or int(base["max_epochs"])
    target = parameter_count(base["model"], 1, args.reference_features)
    if args.train_only:
        for lmax in args.lmax:
            num_features = matched_features(base["model"], lmax, target)
            if not _train(base, lmax, num_features, epochs, os.path.join(args.work, f"lmax{lmax}"), deadline):
                return 0
        return 0
    path = os.path.join(RESULTS, "lmax.json")
    result = json.load(open(path)) if os.path.exists(path) else {}
    result.update({"reference": f"lmax 1, {args.reference_features} features", "target_parameters": target,
                   "data": os.path.relpath(base["data"], REPOSITORY), "max_frames": base["max_frames"],
                   "epochs": epochs, "torch_threads": torch.get_num_threads()})
    known = {e["lmax"]: e for e in result.get("models", [])}
    result["models"] = []
    for lmax in args.lmax:
        entry = known.get(lmax) or {"lmax": lmax}
        if "num_features" not in entry:
            entry["num_features"] = matched_features(base["model"], lmax, target)
            entry["parameters"] = parameter_count(base["model"], lmax, entry["num_features"])
        result["models"].append(entry)
    _write(result)

    _, _, test = split_indices(int(base["max_frames"]), base["split"], base["seed"])
    for entry in result["models"]:
        lmax, run_dir = entry["lmax"], os.path.join(args.work, f"lmax{entry['lmax']}")
        model_file = os.path.join(run_dir, f"water-lmax{lmax}.pt")
        if not _train(base, lmax, entry["num_features"], epochs, run_dir, deadline):
            _write(result)
            return 0
        if "train_hours" not in entry:
            with open(os.path.join(run_dir, "history.json")) as handle:
                history = json.load(handle)
            entry["epochs"] = len(history)
            entry["train_hours"] = sum(row["seconds"] for row in history) / 3600.0
            entry["final_validation"] = {k: history[-1][k] for k in ("val_energy_mae", "val_force_mae")}
            _write(result)
        if "test" not in entry:
            errors = evaluate_model(model_file, base["data"], indices=list(test))
            entry["test"] = {k: errors[k] for k in ("frames", "energy_mae", "energy_rmse", "force_mae", "force_rmse",
                                                    "force_mae_per_element")}
            _write(result)
    for entry in result["models"]:  # timings last, one after the other in this process
        model_file = os.path.join(args.work, f"lmax{entry['lmax']}", f"water-lmax{entry['lmax']}.pt")
        if "ms_per_step" not in entry:
            speed = run_speed([32], model_file=model_file, methods=["torchforce"], dtypes=["float32"])
            entry["ms_per_step"] = speed["records"][0]["ms_per_step"]
            _write(result)
        if "nve" not in entry:
            nve = run_nve([32], [0.5], NVEProtocol(duration_ps=args.nve_ps), methods=["equiforce"],
                          dtypes=["float32"], model_file=model_file,
                          work_dir=os.path.join(args.work, f"lmax{entry['lmax']}", "nve"))
            entry["nve"] = {k: v for k, v in nve["records"][0].items() if k != "series"}
            _write(result)
    with open(os.path.join(RESULTS, "lmax.md"), "w") as handle:
        handle.write(table(result) + "\n")
    plot(result)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
