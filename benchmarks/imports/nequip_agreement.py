"""A NequIP model through equiforce against NequIP's own ASE calculator, on liquid water boxes the import never saw.

    python benchmarks/imports/nequip_agreement.py [--model runs/peers/nequip/water.nequip.zip]
                                                  [--out benchmarks/results/nequip_agreement.json]

The model is the NequIP water peer (H, O; r_max 4 Å; l_max 1; 3 layers; 32 features; float32; one epoch of training:
``benchmarks/peers/nequip/build.py``). NequIP's calculator runs under nequip's global state, as its own loaders set
it up (float64 geometry). float32: the imported file (equiforce's neighbour list, TorchScript) against the packaged
model as shipped (float32 network, float64 edge geometry and energy scale/shift). float64: the file imported in
float64 against NequIP's own float64 model: the packaged configuration built by nequip with ``model_dtype: float64``
and the packaged weights loaded into it; also (``*_same_constants``) against the packaged model with every NequIP
module switched to float64, which carries the same float32-rounded constants (1/sqrt(fan-in), 1/sqrt(average
neighbours)) as the imported file. Goals (those of the SevenNet import): |ΔE| ≤ 2e-4 eV/atom and force MAE ≤ 1e-3
eV/Å in float32, |ΔE| ≤ 1e-6 eV/atom in float64.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from structures import liquid_water  # noqa: E402

from equiforce.bench import describe_machine, write_json  # noqa: E402
from equiforce.calculator import EquiforceCalculator  # noqa: E402
from equiforce.imports._nequip import import_nequip, nequip_global_state  # noqa: E402

GOALS = {"float32": {"energy_ev_per_atom": 2e-4, "force_mae_ev_per_angstrom": 1e-3},
         "float64": {"energy_ev_per_atom": 1e-6}}
DEFAULT_MODEL = "runs/peers/nequip/water.nequip.zip"


def nequip_calculators(model_path: str, precision: str):
    """NequIP's ASE calculator(s) for ``precision`` (see the module docstring), built under nequip's global state:
    {"reference": ..., and for float64 "same_constants": ...}."""
    import yaml
    from hydra.utils import instantiate
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform
    from nequip.integrations.ase import NequIPCalculator
    from nequip.model.saved_models.load_utils import load_saved_model

    with nequip_global_state():
        packaged = load_saved_model(model_path).eval()
        metadata = packaged.metadata
        type_names = metadata["type_names"].split(" ")
        r_max = float(metadata["r_max"])
        models = {"reference": packaged}
        if precision == "float64":
            importer = torch.package.PackageImporter(model_path)
            config = yaml.safe_load(importer.load_text(package="model", resource="config.yaml"))
            rebuilt = instantiate(dict(config["training_module"]["model"], model_dtype="float64"))
            rebuilt.load_state_dict(packaged.state_dict(), strict=True)
            models["reference"] = rebuilt.eval()
            switched = load_saved_model(model_path).eval()
            for module in switched.modules():
                for key, value in list(vars(module).items()):
                    if isinstance(value, torch.dtype):
                        setattr(module, key, torch.float64)  # NequIP's fixed casts, all to float64
            models["same_constants"] = switched.double()

        def calculator(model):
            mapper = ChemicalSpeciesToAtomTypeMapper(model_type_names=type_names,
                                                     chemical_species_to_atom_type_map={t: t for t in type_names})
            return NequIPCalculator(model, "cpu", transforms=[mapper, NeighborListTransform(r_max=r_max)])

        return {name: calculator(model) for name, model in models.items()}


def energy_forces(calculator, atoms):
    atoms = atoms.copy()
    atoms.calc = calculator
    if isinstance(calculator, EquiforceCalculator):
        return atoms.get_potential_energy(), atoms.get_forces()
    with nequip_global_state():  # nequip's data are built in torch's default dtype: float64 under its state
        return atoms.get_potential_energy(), atoms.get_forces()


def compare(energy, forces, energy_ref, forces_ref, n):
    return {"energy_difference_ev_per_atom": abs(energy - energy_ref) / n,
            "force_mae_ev_per_angstrom": float(np.abs(forces - forces_ref).mean()),
            "force_max_difference_ev_per_angstrom": float(np.abs(forces - forces_ref).max())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="a NequIP .nequip.zip (type names H and O)")
    parser.add_argument("--out", default="benchmarks/results/nequip_agreement.json")
    parser.add_argument("--work", default="runs/imports")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not os.path.isfile(args.model):
        print(f"{args.model} is missing: python benchmarks/peers/nequip/build.py writes it", file=sys.stderr)
        return 2
    os.makedirs(args.work, exist_ok=True)
    structures = {f"water-{n} ({3 * n} atoms)": liquid_water(n, seed=seed) for n, seed in ((32, 0), (59, 1), (128, 2))}
    result = {"machine": describe_machine(), "threads": args.threads, "goals": GOALS, "records": [], "imports": {}}
    for precision in ("float32", "float64"):
        model_file = os.path.join(args.work, f"nequip-water-{precision}.pt")
        started = time.perf_counter()
        metadata = import_nequip(args.model, model_file, dtype=precision, progress=False)
        seconds = time.perf_counter() - started
        source = metadata["source"]
        result["imports"][precision] = {
            "seconds": seconds, "file": model_file, "file_megabytes": os.path.getsize(model_file) / 1e6,
            "model_file_sha256": source["model_file_sha256"], "imported_with_nequip": source["imported_with_nequip"],
            "written_by_nequip": source["written_by_nequip"], "num_parameters": source["num_parameters"],
            "round_trip_check": source["round_trip_check"]}
        print(f"imported {precision} in {seconds:.1f} s", flush=True)
        ours = EquiforceCalculator(model_file)
        references = nequip_calculators(args.model, precision)
        for name, atoms in structures.items():
            started = time.perf_counter()
            n = len(atoms)
            energy, forces = energy_forces(ours, atoms)
            energy_ref, forces_ref = energy_forces(references["reference"], atoms)
            record = {"structure": name, "precision": precision, "atoms": n,
                      "cell_lengths_angstrom": [float(x) for x in atoms.cell.cellpar()[:3]],
                      "energy_ev": float(energy), "reference_energy_ev": float(energy_ref),
                      **compare(energy, forces, energy_ref, forces_ref, n),
                      "reference_force_rms_ev_per_angstrom": float(np.sqrt((forces_ref ** 2).mean()))}
            if "same_constants" in references:
                energy_same, forces_same = energy_forces(references["same_constants"], atoms)
                record.update({f"{key}_same_constants": value for key, value in
                               compare(energy, forces, energy_same, forces_same, n).items()})
            record["seconds"] = time.perf_counter() - started
            goal = GOALS[precision]
            record["meets_goal"] = bool(record["energy_difference_ev_per_atom"] <= goal["energy_ev_per_atom"] and
                                        record["force_mae_ev_per_angstrom"] <= goal.get("force_mae_ev_per_angstrom",
                                                                                        np.inf))
            result["records"].append(record)
            print(f"{precision} {name:22s} dE {record['energy_difference_ev_per_atom']:.2e} eV/atom  "
                  f"F MAE {record['force_mae_ev_per_angstrom']:.2e}  max "
                  f"{record['force_max_difference_ev_per_angstrom']:.2e} eV/Å"
                  + (f"  (same constants: dE {record['energy_difference_ev_per_atom_same_constants']:.1e}, F MAE "
                     f"{record['force_mae_ev_per_angstrom_same_constants']:.1e})" if "same_constants" in references
                     else "")
                  + f"  {'ok' if record['meets_goal'] else 'MISSED'}", flush=True)
    write_json(result, args.out)
    print(f"wrote {args.out}")
    return 0 if all(r["meets_goal"] for r in result["records"]) else 1


if __name__ == "__main__":
    sys.exit(main())
