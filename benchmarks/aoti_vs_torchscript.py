"""The two export paths of one model, side by side: TorchScript in openmm-torch's TorchForce against
torch.export + AOTInductor in openmm.PythonForce (``equiforce export --format aoti``).

Same weights (the shipped water model by default, in its own float32), same water boxes (96, 384 and 1536 atoms),
same OpenMM CPU platform, same process: the two methods' MD steps are timed in alternating blocks
(``time_interleaved``), so background load reaches both alike; ms/step is the median of the blocks. Also
recorded: the package's compile time and both file sizes, and the largest energy and force differences between
the two forces on each box's starting configuration.

    .venv/bin/python benchmarks/aoti_vs_torchscript.py            # writes benchmarks/results/aoti_vs_torchscript.json
    .venv/bin/python benchmarks/aoti_vs_torchscript.py --quick    # 96 atoms, a few steps, no JSON

The package is compiled once into runs/bench/aoti/ (minutes) and reused; a box already in the JSON (same model
and settings) is skipped, so an interrupted run continues.
"""
import argparse
import datetime
import json
import os
import sys

import numpy as np
import torch
import openmm
from openmm import unit

from equiforce.bench._machine import describe_machine
from equiforce.bench._speed import WaterCase, aoti_package, make_step, write_json
from equiforce.bench._threads import torch_threads
from equiforce.bench._timing import time_interleaved
from equiforce.export import load_model, read_aoti_metadata
from equiforce.hashing import file_sha256
from equiforce.openmm import create_force, create_pythonforce

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "aoti_vs_torchscript.json")
SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python", "equiforce", "models",
                       "water-gfn2.pt")
METHODS = ("torchforce", "aoti-pythonforce")
#: With --plain, also the TorchScript file of e3nn's plain code paths (no native ops), see plain_torchscript.
PLAIN_METHODS = ("torchforce-plain",)
#: Where the TorchScript file of the package's own code paths is written (see :func:`plain_torchscript`).
PLAIN_FOLDER = os.path.join("runs", "bench", "aoti")


def plain_torchscript(model_file: str) -> str:
    """The same weights exported to TorchScript with the code paths the package has: e3nn's tensor product and
    radial MLPs (no fused convolution op, no radial tables); self-interaction matrices on in both. Timed as
    "torchforce-plain", it separates the cost of the export technology from that of the native ops."""
    from equiforce.export import export_model
    from equiforce.export._aoti import eager_network
    from equiforce.nn import ModelConfig

    path = os.path.join(PLAIN_FOLDER, f"{file_sha256(model_file)[:16]}-plain.pt")
    if not os.path.exists(path):
        module, metadata = load_model(model_file)
        model = eager_network(ModelConfig.from_dict(metadata["config"]), dict(module.state_dict()), torch.float32)
        export_model(model, path, dtype=metadata["dtype"], fused_convolution=False, radial_table_knots=None)
    return path


def _step(method, dtype, module, metadata, model_file, case, threads):
    if method == "torchforce-plain":
        return make_step("torchforce", dtype, module, metadata, plain_torchscript(model_file), case, "CPU", threads)
    return make_step(method, dtype, module, metadata, model_file, case, "CPU", threads)


def _energy_forces(force: openmm.Force, case: WaterCase):
    """(energy kJ/mol, forces [n, 3] kJ/mol/nm) of ``force`` alone on the box's starting positions."""
    system = case.masses_system()
    system.addForce(force)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(case.positions_nm * unit.nanometer)
    state = context.getState(getEnergy=True, getForces=True)
    return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


def difference(model_file: str, package: str, case: WaterCase, dtype: str, plain: bool = False) -> dict:
    """Largest differences between the two forces on ``case`` (same positions, same precision); with ``plain``
    also between the package and the plain TorchScript file."""
    e_ts, f_ts = _energy_forces(create_force(model_file, case.topology, precision=dtype), case)
    e_ao, f_ao = _energy_forces(create_pythonforce(package, case.topology), case)
    force_diff = float(np.abs(np.asarray(f_ts) - np.asarray(f_ao)).max())
    extra = {}
    if plain:
        e_pl, f_pl = _energy_forces(create_force(plain_torchscript(model_file), case.topology, precision=dtype), case)
        extra["plain_vs_aoti"] = {"max_abs_energy_difference_kj_mol": abs(e_pl - e_ao),
                                  "max_abs_force_difference_kj_mol_nm": float(np.abs(f_pl - f_ao).max())}
    return {**extra, "energy_torchforce_kj_mol": e_ts, "energy_aoti_kj_mol": e_ao,
            "max_abs_energy_difference_kj_mol": abs(e_ts - e_ao),
            "energy_difference_per_atom_kj_mol": abs(e_ts - e_ao) / case.n_atoms,
            "max_abs_force_difference_kj_mol_nm": force_diff,
            "max_abs_force_kj_mol_nm": float(np.abs(np.asarray(f_ts)).max()),
            "max_force_difference_relative": force_diff / float(np.abs(np.asarray(f_ts)).max())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=SHIPPED, help="TorchScript file of equiforce's own network")
    parser.add_argument("--molecules", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--dtype", choices=["float32", "float64"], default=None, help="default: the file's own")
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--block-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--plain", action="store_true",
                        help="also time torchforce-plain (TorchScript without the native ops)")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.molecules, args.blocks, args.block_steps, args.out = [32], 2, 2, None
    methods = METHODS + (PLAIN_METHODS if args.plain else ())
    module, metadata = load_model(args.model)
    dtype = args.dtype or metadata["dtype"]
    package = aoti_package(args.model, dtype, threads=args.threads)
    package_metadata = read_aoti_metadata(package)
    settings = {"model": os.path.relpath(args.model), "model_sha256": file_sha256(args.model),
                "package_sha256": file_sha256(package), "dtype": dtype, "blocks": args.blocks,
                "block_steps": args.block_steps, "threads": args.threads or "default", "methods": list(methods)}
    result = {"machine": describe_machine(), **settings,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "torch_version": torch.__version__, "openmm_version": openmm.__version__,
              "paths_tested_with_torch": {"torchforce": torch.__version__,
                                          "aoti-pythonforce": package_metadata["aoti"]["torch_version"]},
              "compile_seconds": package_metadata["aoti"]["compile_seconds"],
              "export_seconds": package_metadata["aoti"]["export_seconds"],
              "aoti_bounds": {k: package_metadata["aoti"][k] for k in ("min_atoms", "max_atoms", "max_edges")},
              "file_bytes": {"torchscript": os.path.getsize(args.model), "aoti": os.path.getsize(package)},
              "aoti_code_paths": {k: package_metadata[k] for k in ("fused_convolution", "radial_table",
                                                                   "self_interaction_matrix")},
              "load_average_at_start": list(os.getloadavg()), "records": []}
    if args.out and os.path.exists(args.out):
        with open(args.out) as handle:
            earlier = json.load(handle)
        if all(earlier.get(k) == v for k, v in settings.items()):
            result["records"] = earlier["records"]
    done = {r["n_atoms"] for r in result["records"]}
    with torch_threads(args.threads):
        for n_molecules in args.molecules:
            case = WaterCase(n_molecules, metadata)
            if case.n_atoms in done:
                continue
            accuracy = difference(args.model, package, case, dtype, args.plain)
            steps = {method: _step(method, dtype, module, metadata, args.model, case, args.threads)
                     for method in methods}
            timings = time_interleaved(steps, 5, args.block_steps, args.blocks, max_block_seconds=3.0,
                                       max_warmup_seconds=30.0)
            record = {"system": case.name, "n_atoms": case.n_atoms,
                      **{f"{m}_ms_per_step": timings[m]["ms_per_step"] for m in methods},
                      "timings": {m: timings[m] for m in methods},
                      "aoti_over_torchforce_time": timings["aoti-pythonforce"]["ms_per_step"]
                      / timings["torchforce"]["ms_per_step"],
                      "aoti_over_torchforce_fastest_block": timings["aoti-pythonforce"]["ms_min"]
                      / timings["torchforce"]["ms_min"],
                      **accuracy, "load_average_after": list(os.getloadavg())}
            result["records"].append(record)
            print(f"{case.n_atoms} atoms: torchforce {record['torchforce_ms_per_step']:.1f} ms/step, "
                  f"aoti-pythonforce {record['aoti-pythonforce_ms_per_step']:.1f} ms/step "
                  f"(×{record['aoti_over_torchforce_time']:.2f}); "
                  f"|ΔE| {accuracy['max_abs_energy_difference_kj_mol']:.3g} kJ/mol, max |ΔF| {accuracy['max_abs_force_difference_kj_mol_nm']:.3g} kJ/mol/nm", flush=True)
            del steps
            if args.out:
                write_json(result, args.out)
    if args.out:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
