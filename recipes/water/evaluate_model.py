#!/usr/bin/env python
"""Errors of the exported water model on the held-out frames (writes benchmarks/results/water_gfn2_errors.json).

Two held-out sets, both evaluated with the exported TorchScript file exactly as shipped (float32):

- ``test``: the test split of the training run (same data prefix, fractions and seed as ``train_water.yaml``);
- ``unseen``: the frames labelled after the training run started (``max_frames`` onwards): never in any split.

Usage (from the repository root)::

    python recipes/water/evaluate_model.py [--model python/equiforce/models/water-gfn2.pt]
"""
import argparse
import csv
import json
import os

import yaml

from equiforce.data import split_indices
from equiforce.evaluate import evaluate_model, format_errors
from equiforce.pretrained import SHIPPED_MODELS

HERE = os.path.dirname(os.path.abspath(__file__))
REPOSITORY = os.path.dirname(os.path.dirname(HERE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=SHIPPED_MODELS["water-gfn2"].path)
    parser.add_argument("--config", default=os.path.join(HERE, "train_water.yaml"))
    parser.add_argument("--out", default=os.path.join(REPOSITORY, "benchmarks", "results", "water_gfn2_errors.json"))
    args = parser.parse_args()
    with open(args.config) as handle:
        config = yaml.safe_load(handle)
    data = os.path.join(REPOSITORY, config["data"])
    if not os.path.exists(data):
        data += ".xz"  # a fresh checkout has only the committed archive (ASE reads it directly)
    trained_frames = int(config["max_frames"])
    _, validation, test = split_indices(trained_frames, config["split"], config["seed"])
    result = {"model": os.path.relpath(args.model, REPOSITORY), "config": os.path.relpath(args.config, REPOSITORY)}
    result["test"] = evaluate_model(args.model, data, indices=list(test), progress=True)
    print("test split:   " + format_errors(result["test"]))
    result["unseen"] = evaluate_model(args.model, data, start=trained_frames, progress=True)
    print("unseen frames: " + format_errors(result["unseen"]))
    run_dir = os.path.join(REPOSITORY, config["output_dir"])
    history = os.path.join(run_dir, "history.csv")
    if os.path.exists(history):
        with open(history) as handle:
            rows = list(csv.DictReader(handle))
        result["training"] = {
            "epochs": len(rows),
            "hours": sum(float(r["seconds"]) for r in rows) / 3600.0,
            "best_epoch": max(int(r["epoch"]) for r in rows if r["best"] == "True"),
            "train_frames": trained_frames - len(validation) - len(test),
            "validation_frames": len(validation),
        }
    for split in ("test", "unseen"):  # keep the JSON portable
        result[split]["model"] = result["model"]
        result[split]["data"] = os.path.relpath(result[split]["data"], REPOSITORY)
        for key in ("first_frame", "last_frame"):
            result[split][key] = os.path.relpath(result[split][key], REPOSITORY)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=1)
        handle.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
