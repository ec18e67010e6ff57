"""Check that the NequIP peer (runs/peers/nequip/water.nequip.zip, from build.py) runs in OpenMM via openmm-ml.

Builds a 32-molecule water box, creates the system with MLPotential('nequip', ...), runs Verlet steps at
0.5 fs on the CPU platform and prints the potential energy and a rough ms/step (median over --steps single
steps after --warmup steps). Done twice:
  * "as shipped": exactly what openmm-ml 1.8 does;
  * "eval": the same, but the module returned by nequip's load_saved_model is put in eval mode. openmm-ml
    keeps the model only inside the PythonForce's closure, so we reach it by wrapping
    nequip.model.saved_models.load_utils.load_saved_model (openmm-ml imports it at addForces time).

Timings are rough (single torch thread, shared machine).

    .venv/bin/python benchmarks/peers/nequip/check_openmm.py [--model PATH] [--steps 5] [--warmup 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]
DEFAULT_MODEL = REPO / "runs" / "peers" / "nequip" / "water.nequip.zip"


def run_once(label: str, model_path: Path, eval_mode: bool, steps: int, warmup: int) -> dict:
    import openmm
    from openmm import unit
    from openmmml import MLPotential
    import nequip.model.saved_models.load_utils as load_utils

    from equiforce.systems import water_box
    from equiforce.units import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV

    seen = {}
    original = load_utils.load_saved_model

    def wrapped(*args, **kwargs):
        model = original(*args, **kwargs)
        seen["training_before"] = model.training
        if eval_mode:
            model.eval()
        seen["training_after"] = model.training
        seen["model"] = model
        return model

    load_utils.load_saved_model = wrapped
    try:
        topology, positions_nm = water_box(32, 1.0, seed=0)
        dtype_before = torch.get_default_dtype()
        potential = MLPotential(
            "nequip",
            modelPath=str(model_path),
            lengthScale=1.0 / ANGSTROM_PER_NM,  # model length unit (A) in nm
            energyScale=KJ_PER_MOL_PER_EV,  # model energy unit (eV) in kJ/mol
        )
        system = potential.createSystem(topology)
        dtype_after = torch.get_default_dtype()
    finally:
        load_utils.load_saved_model = original

    integrator = openmm.VerletIntegrator(0.5 * unit.femtoseconds)
    platform = openmm.Platform.getPlatformByName("CPU")
    context = openmm.Context(system, integrator, platform, {"Threads": "1"})
    context.setPositions(positions_nm * unit.nanometer)
    e0 = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    for _ in range(warmup):
        integrator.step(1)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        integrator.step(1)
        times.append(time.perf_counter() - t)
    e1 = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    n_params = sum(p.numel() for p in seen["model"].parameters())
    result = {
        "label": label,
        "atoms": system.getNumParticles(),
        "params": n_params,
        "training_as_loaded": seen["training_before"],
        "training_used": seen["training_after"],
        "default_dtype": f"{dtype_before} -> {dtype_after}",
        "E0_kJmol": e0,
        "E_end_kJmol": e1,
        "ms_per_step_median": 1e3 * statistics.median(times),
        "ms_per_step_all": [round(1e3 * x, 1) for x in times],
    }
    for k, v in result.items():
        print(f"  {k}: {v}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-first", action="store_true", help="run the eval-mode case first (order check)")
    args = parser.parse_args(argv)
    if not args.model.exists():
        print(f"missing {args.model}: run benchmarks/peers/nequip/build.py first", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)

    from importlib.metadata import version as _dist_version

    import openmm, nequip

    print(f"openmm {openmm.__version__}, openmmml {_dist_version('openmmml')}, nequip {nequip.__version__}, torch {torch.__version__}")
    results = {}
    for eval_mode in ([True, False] if args.eval_first else [False, True]):
        label = "eval" if eval_mode else "as shipped"
        print(f"[{label}]")
        results[label] = run_once(label, args.model, eval_mode, args.steps, args.warmup)
    shipped, evald = results["as shipped"], results["eval"]
    de = abs(shipped["E0_kJmol"] - evald["E0_kJmol"])
    print(f"|E0(shipped) - E0(eval)| = {de:.3e} kJ/mol")
    return 0


if __name__ == "__main__":
    sys.exit(main())
