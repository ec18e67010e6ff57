"""Handedness of hydrogen peroxide: a reflection-invariant (0e) readout cannot learn it, the pseudoscalar (0o) head can.

Data: conformers of H2O2 (H, O, O, H) with an H-O-O-H dihedral drawn uniformly in (0, π), O-O, O-H bond
lengths and H-O-O angles with Gaussian noise, each with its mirror image (z -> -z, dihedral -> -dihedral); every
structure is then turned by its own random rotation and shifted. Label +1 for a positive dihedral, -1 for a
negative one (checked on the final coordinates). Train and test sets hold whole enantiomer pairs.

Models, one trunk configuration (O(3) features with even and odd parity, ``hidden_parity="both"``), trained with
the same optimiser, seed and logistic loss log(1 + exp(-y · logit)) on the per-structure logit of:

  (a) the energy-like 0e readout (``batch_energy``): a reflection-invariant scalar, so a structure and its mirror
      image get the same logit and exactly one of each pair is classified right: chance;
  (b) the pseudoscalar head (``batch_properties(...)["pseudoscalar"]``, irrep 0o): it changes sign under the
      reflection, so it can learn the label;
  (c) for reference, the 0e readout of an SO(3)-only model (``parity=False``): it is not reflection invariant
      and can learn handedness too (which is why the O(3) model's energy is the one that must not).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/studies/chirality/chirality.py      # ~2 min; writes the results
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/studies/chirality/chirality.py --quick   # a smoke run, no files
"""
import argparse
import datetime
import json
import math
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

import equiforce
from equiforce.data import Structure, collate, structure_to_graph
from equiforce.nn import PropertyModel

RESULTS = Path(__file__).resolve().parents[2] / "results"
ELEMENTS = ["H", "O"]
TRUNK = dict(elements=ELEMENTS, cutoff=4.0, lmax=1, num_features=8, num_layers=3, num_basis=6, radial_hidden=16,
             avg_num_neighbors=3.0)
# H2O2 geometry (Å, degrees) and the noise on it
R_OO, R_OH, ANGLE = 1.45, 0.97, 100.0
SIGMA_BOND, SIGMA_ANGLE = 0.03, 5.0


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation [3, 3] (QR of a Gaussian matrix, signs fixed, det +1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def hydrogen_peroxide(rng: np.random.Generator, dihedral: float) -> np.ndarray:
    """Positions [4, 3] Å of H, O, O, H with the given H-O-O-H dihedral (rad) and noisy bonds and angles."""
    r_oo = R_OO + SIGMA_BOND * rng.normal()
    r1, r2 = R_OH + SIGMA_BOND * rng.normal(size=2)
    a1, a2 = np.radians(ANGLE + SIGMA_ANGLE * rng.normal(size=2))
    return np.array([
        [r1 * np.cos(a1), r1 * np.sin(a1), 0.0],
        [0.0, 0.0, 0.0],
        [r_oo, 0.0, 0.0],
        [r_oo - r2 * np.cos(a2), r2 * np.sin(a2) * np.cos(dihedral), r2 * np.sin(a2) * np.sin(dihedral)],
    ])


def dihedral_angle(positions: np.ndarray) -> float:
    """Signed dihedral (rad) of atoms 0-1-2-3; its sign is the handedness, flipped by any reflection."""
    b0, b1, b2 = positions[0] - positions[1], positions[2] - positions[1], positions[3] - positions[2]
    b1n = b1 / np.linalg.norm(b1)
    v = b0 - np.dot(b0, b1n) * b1n
    w = b2 - np.dot(b2, b1n) * b1n
    return float(np.arctan2(np.dot(np.cross(b1n, v), w), np.dot(v, w)))


def enantiomer_pairs(num_pairs: int, seed: int) -> Tuple[List[np.ndarray], np.ndarray, np.ndarray]:
    """2 · num_pairs structures (pair k: 2k and 2k+1), labels ±1 [2P] and dihedrals [2P] (rad)."""
    rng = np.random.default_rng(seed)
    mirror = np.diag([1.0, 1.0, -1.0])
    structures, labels, dihedrals = [], [], []
    for _ in range(num_pairs):
        right = hydrogen_peroxide(rng, rng.uniform(0.0, math.pi))
        for positions in (right, right @ mirror):
            moved = positions @ random_rotation(rng).T + rng.normal(scale=5.0, size=3)
            phi = dihedral_angle(moved)
            structures.append(moved)
            labels.append(1.0 if phi > 0 else -1.0)
            dihedrals.append(phi)
    labels, dihedrals = np.array(labels), np.array(dihedrals)
    assert np.all(labels[0::2] == 1) and np.all(labels[1::2] == -1)  # the mirror image has the other hand
    return structures, labels, dihedrals


def graphs_of(structures: List[np.ndarray], cutoff: float):
    species = ["H", "O", "O", "H"]
    return [structure_to_graph(Structure(species, p, None, None, None), ELEMENTS, cutoff) for p in structures]


def logits(model, name: str, graphs) -> torch.Tensor:
    """[B] logits of ``graphs``: the 0e readout (``energy``) or the 0o head (``pseudoscalar``)."""
    batch = collate(graphs)
    args = (batch.positions, batch.species, batch.edge_index, batch.edge_offsets, batch.batch, batch.num_graphs)
    if name == "energy":
        return model.batch_energy(*args)
    return model.batch_properties(*args)[name]


def train_classifier(config: equiforce.ModelConfig, output: str, train_graphs, train_labels: torch.Tensor,
                     epochs: int, batch_size: int, seed: int) -> Tuple[torch.nn.Module, List[float]]:
    """Logistic regression of the labels on the chosen logit, AdamW; returns the model and the epoch losses."""
    torch.manual_seed(seed)
    model = PropertyModel(config).double() if config.heads else equiforce.EquivariantPotential(config).double()
    optimiser = torch.optim.AdamW(model.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(train_graphs), generator=generator).tolist()
        total = 0.0
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            logit = logits(model, output, [train_graphs[i] for i in chosen])  # [b]
            loss = torch.nn.functional.softplus(-train_labels[chosen] * logit).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(chosen)
        losses.append(total / len(order))
    return model, losses


@torch.no_grad()
def evaluate(model, output: str, graphs, labels: torch.Tensor) -> Dict[str, float]:
    logit = logits(model, output, graphs)  # [B]
    predicted = torch.where(logit > 0, 1.0, -1.0)
    pair_sum = (logit[0::2] + logit[1::2]).abs()  # 0 for a pseudoscalar: s(mirror) = -s
    pair_difference = (logit[0::2] - logit[1::2]).abs()  # 0 for an invariant scalar
    return {
        "accuracy": float((predicted == labels).double().mean()),
        "logistic_loss": float(torch.nn.functional.softplus(-labels * logit).mean()),
        "max_abs_logit_difference_within_pairs": float(pair_difference.max()),
        "max_abs_logit_sum_within_pairs": float(pair_sum.max()),
        "mean_abs_logit": float(logit.abs().mean()),
    }


MODELS = {
    "a_invariant_0e_readout": (dict(parity=True, hidden_parity="both"), "energy",
                               "O(3) trunk, energy-like 0e readout (reflection invariant)"),
    "b_pseudoscalar_0o_head": (dict(parity=True, hidden_parity="both", heads=["pseudoscalar"]), "pseudoscalar",
                               "O(3) trunk, pseudoscalar 0o head"),
    "c_so3_0e_readout": (dict(parity=False), "energy", "SO(3)-only trunk (parity=False), 0e readout (reference)"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run; writes nothing")
    parser.add_argument("--train-pairs", type=int, default=300)
    parser.add_argument("--test-pairs", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.train_pairs, args.test_pairs, args.epochs = 20, 20, 2
    torch.set_num_threads(1)
    structures, labels, dihedrals = enantiomer_pairs(args.train_pairs + args.test_pairs, args.seed)
    cut = 2 * args.train_pairs
    graphs = graphs_of(structures, TRUNK["cutoff"])
    for graph in graphs:
        graph.positions = graph.positions.double()
    labels_t = torch.tensor(labels)
    train_graphs, test_graphs = graphs[:cut], graphs[cut:]
    train_labels, test_labels = labels_t[:cut], labels_t[cut:]

    results = {}
    for name, (settings, output, description) in MODELS.items():
        start = time.perf_counter()
        config = equiforce.ModelConfig(**TRUNK, **settings)
        model, losses = train_classifier(config, output, train_graphs, train_labels, args.epochs, 32, args.seed)
        results[name] = {
            "description": description,
            "logit": output,
            "irreps_features": str(model.network.irreps_features),
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_loss_first_last_epoch": [losses[0], losses[-1]],
            "train": evaluate(model, output, train_graphs, train_labels),
            "test": evaluate(model, output, test_graphs, test_labels),
            "seconds": time.perf_counter() - start,
        }
        print(f"{name}: test accuracy {100 * results[name]['test']['accuracy']:.1f} %  "
              f"(train {100 * results[name]['train']['accuracy']:.1f} %, {results[name]['seconds']:.0f} s)")
    if args.quick:
        return
    report = {
        "what": "H2O2 handedness (sign of the H-O-O-H dihedral) from a 0e readout vs a 0o pseudoscalar head",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"equiforce": equiforce.__version__, "torch": torch.__version__},
        "data": {
            "molecule": "H2O2 (H, O, O, H)",
            "train_pairs": args.train_pairs,
            "test_pairs": args.test_pairs,
            "dihedral": "uniform in (0, pi) rad; the mirror image (z -> -z) has the opposite dihedral",
            "noise": {"bond_sigma_angstrom": SIGMA_BOND, "angle_sigma_degrees": SIGMA_ANGLE},
            "label": "+1 for a positive dihedral, -1 for a negative one",
            "test_abs_dihedral_degrees_min_max": [float(np.degrees(np.abs(dihedrals[cut:])).min()),
                                                  float(np.degrees(np.abs(dihedrals[cut:])).max())],
            "seed": args.seed,
        },
        "training": {"loss": "mean log(1 + exp(-y * logit))", "optimiser": "AdamW lr 5e-3", "epochs": args.epochs,
                     "batch_size": 32, "dtype": "float64", "threads": 1, "trunk": TRUNK},
        "models": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "chirality.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [
        "# Chirality: H2O2 handedness from a reflection-invariant readout vs a pseudoscalar head",
        "",
        f"{args.train_pairs} training and {args.test_pairs} held-out enantiomer pairs (dihedral uniform in (0, π), "
        f"bond noise {SIGMA_BOND} Å, angle noise {SIGMA_ANGLE}°, random rotations); logistic loss, {args.epochs} "
        "epochs, same trunk and seed for every model. Written by `benchmarks/studies/chirality/chirality.py`.",
        "",
        "| model | logit | held-out accuracy | train accuracy | max \\|logit(x) − logit(mirror x)\\| | "
        "max \\|logit(x) + logit(mirror x)\\| |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        test = result["test"]
        lines.append(
            f"| {result['description']} | {result['logit']} | {100 * test['accuracy']:.1f} % | "
            f"{100 * result['train']['accuracy']:.1f} % | {test['max_abs_logit_difference_within_pairs']:.1e} | "
            f"{test['max_abs_logit_sum_within_pairs']:.1e} |"
        )
    lines += ["", "Chance is 50 %. An invariant logit is the same for a structure and its mirror image (column 5 ≈ 0), "
              "so exactly one of each pair is right; the pseudoscalar is odd under the reflection (column 6 ≈ 0).", ""]
    (RESULTS / "chirality.md").write_text("\n".join(lines))
    print(f"wrote {RESULTS / 'chirality.json'} and {RESULTS / 'chirality.md'}")


if __name__ == "__main__":
    main()
