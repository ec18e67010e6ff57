"""Plot a training run's learning curve (history.csv written by `equiforce train`) to PNG.

    .venv/bin/python recipes/water/plot_history.py runs/water-gfn2/history.csv benchmarks/results/water_history.png
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(history_csv: str, out_png: str) -> None:
    with open(history_csv) as handle:
        rows = list(csv.DictReader(handle))
    epochs = [int(r["epoch"]) for r in rows]
    fig, (forces, energies) = plt.subplots(1, 2, figsize=(9, 3.5))
    forces.plot(epochs, [float(r["train_force_mae"]) for r in rows], label="train")
    forces.plot(epochs, [float(r["val_force_mae"]) for r in rows], label="validation")
    forces.axhline(40.0, color="grey", ls="--", lw=0.8, label="target")
    forces.set_ylabel("force MAE (meV/Å)")
    energies.plot(epochs, [float(r["train_energy_mae"]) for r in rows], label="train")
    energies.plot(epochs, [float(r["val_energy_mae"]) for r in rows], label="validation")
    energies.axhline(1.0, color="grey", ls="--", lw=0.8, label="target")
    energies.set_ylabel("energy MAE (meV/atom)")
    for axis in (forces, energies):
        axis.set_xlabel("epoch")
        axis.set_yscale("log")
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
