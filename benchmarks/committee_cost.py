"""Cost of a committee file in MD: OpenMM ms/step of one member vs committees of 2 and 4, timed in turns.

    python benchmarks/committee_cost.py [--molecules 32 128] [--members 2 4] [--threads 1]
                                        [--out benchmarks/results/committee_cost.json]

Members have the shipped water model's architecture (its metadata's config: lmax 1, 32 features, 3 layers, 4 Å,
with its short-range wall) and different random initialisations (seeds 0..K-1); member 0 exported alone
(``export_model``) is the baseline, and committees of its first K members (``export_committee``, one shared
neighbour list) are compared with it. Every file is float32 with the default optimisations (fused convolution,
radial tables, self-interaction matrices). Each method is a TorchForce in its own OpenMM CPU-platform Context on
the same periodic water box (Verlet, 0.5 fs), with the same OpenMM and torch thread count; the methods are timed
in alternating rounds in this one process (``equiforce.bench.time_interleaved``: median of the blocks), and
ratios to the single member are reported. "spread-K" times what ``CommitteeReporter`` does per report: the K
members' energies and forces (``CommitteeEvaluator.member_energies_and_forces``, one evaluation per "step").

Results are written after each box; a rerun with the same settings skips the boxes already done.
"""
import argparse
import json
import os
import sys

import torch

import equiforce
from equiforce.bench import WaterCase, describe_machine, make_step, time_interleaved, torch_threads, write_json
from equiforce.committee import CommitteeEvaluator, export_committee
from equiforce.export import load_model
from equiforce.nn import ModelConfig
from equiforce.pretrained import shipped_model_path
from equiforce.units import ANGSTROM_PER_NM


def member_files(work: str, max_members: int, counts):
    """{"single": path, "committee-K": path, ...}, exported unless already there."""
    os.makedirs(work, exist_ok=True)
    config = equiforce.read_metadata(shipped_model_path("water-gfn2"))["config"]
    members = []
    for seed in range(max_members):
        torch.manual_seed(seed)
        members.append(equiforce.EquivariantPotential(ModelConfig.from_dict(config)))
    files = {"single": os.path.join(work, "member0.pt")}
    if not os.path.exists(files["single"]):
        equiforce.export_model(members[0], files["single"], dtype="float32")
    for k in counts:
        path = os.path.join(work, f"committee{k}.pt")
        if not os.path.exists(path):
            export_committee(members[:k], path, dtype="float32")
        files[f"committee-{k}"] = path
    return files, config


def spread_step(evaluator: CommitteeEvaluator, case: WaterCase):
    """``step(n)``: n evaluations of every member's energy and forces (what one CommitteeReporter report costs)."""
    positions = case.positions_nm * ANGSTROM_PER_NM  # [N, 3] Å
    cell = case.box_nm * ANGSTROM_PER_NM  # [3, 3] Å
    numbers = [atom.element.atomic_number for atom in case.topology.atoms()]

    def step(n: int) -> None:
        for _ in range(n):
            evaluator.member_energies_and_forces(positions, numbers, cell)

    return step


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--members", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--threads", type=int, default=1, help="OpenMM CPU and torch threads for every method")
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--block-steps", type=int, default=5)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--work", default=os.path.join("runs", "bench", "committee"), help="model files go here")
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "committee_cost.json"))
    args = parser.parse_args(argv)

    files, config = member_files(args.work, max(args.members), args.members)
    settings = {"molecules": args.molecules, "members": args.members, "threads": args.threads,
                "blocks": args.blocks, "block_steps": args.block_steps, "warmup_steps": args.warmup_steps,
                "member_config": config, "dtype": "float32", "platform": "CPU", "timestep_fs": 0.5}
    with torch_threads(args.threads):  # the machine record states the thread count the methods ran with
        result = {"settings": settings, "machine": describe_machine(), "boxes": []}
    if os.path.exists(args.out):
        with open(args.out) as handle:
            earlier = json.load(handle)
        if earlier.get("settings") == json.loads(json.dumps(settings)):
            result["boxes"] = earlier.get("boxes", [])
    done = {box["n_molecules"] for box in result["boxes"]}
    with torch_threads(args.threads):
        for n_molecules in args.molecules:
            if n_molecules in done:
                continue
            module, metadata = load_model(files["single"])
            case = WaterCase(n_molecules, metadata)
            steps = {name: make_step("torchforce", "float32", module, metadata, path, case, "CPU", args.threads)
                     for name, path in files.items()}
            largest = max(args.members)
            steps[f"spread-{largest}"] = spread_step(CommitteeEvaluator(files[f"committee-{largest}"]), case)
            load = list(os.getloadavg())
            timings = time_interleaved(steps, args.warmup_steps, args.block_steps, args.blocks,
                                       max_block_seconds=2.0, max_warmup_seconds=20.0)
            base = timings["single"]["ms_per_step"]
            box = {"n_molecules": n_molecules, "n_atoms": case.n_atoms, "load_average_before": load,
                   "load_average_after": list(os.getloadavg()), "methods": timings,
                   "ratio_to_single": {name: t["ms_per_step"] / base for name, t in timings.items()}}
            result["boxes"].append(box)
            write_json(result, args.out)
            print(f"{case.n_atoms} atoms: " + ", ".join(
                f"{name} {t['ms_per_step']:.1f} ms ({box['ratio_to_single'][name]:.2f}x)" for name, t in timings.items()),
                flush=True)
            del steps
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
