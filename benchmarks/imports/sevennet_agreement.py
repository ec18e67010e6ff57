"""SevenNet-0 through equiforce against SevenNet's own ASE calculator, on structures the import never saw.

    python benchmarks/imports/sevennet_agreement.py [--out benchmarks/results/sevennet_agreement.json]

float32: the imported file (equiforce's neighbour list, TorchScript) against ``SevenNetCalculator('7net-0')`` as
shipped (float32, its own graph builder and force module). float64: the file imported in float64 against the
same calculator with its network converted to float64 as the import converts it (the Wigner 3j constants its
checkpoint stores in float32 recomputed in float64; SevenNet's one-hot module, which makes float32 vectors
whatever the weights, swapped for equiforce's dtype-following copy) and its graph kept in float64. Goals of issue 26: |ΔE| ≤ 2e-4 eV/atom and force MAE ≤ 1e-3 eV/Å in float32, |ΔE| ≤ 1e-6
eV/atom in float64.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from structures import agreement_structures  # noqa: E402

from equiforce.bench import describe_machine, write_json  # noqa: E402
from equiforce.calculator import EquiforceCalculator  # noqa: E402
from equiforce.imports import import_sevennet  # noqa: E402
from equiforce.imports._sevennet import _exact_coupling_coefficients, _with_onehot_in_model_dtype  # noqa: E402

GOALS = {"float32": {"energy_ev_per_atom": 2e-4, "force_mae_ev_per_angstrom": 1e-3},
         "float64": {"energy_ev_per_atom": 1e-6}}


def sevennet_reference(precision: str):
    """SevenNet's ASE calculator for SevenNet-0 (float64: its network converted, see the module docstring)."""
    from sevenn.calculator import SevenNetCalculator

    calculator = SevenNetCalculator("7net-0", device="cpu")
    if precision == "float64":
        _with_onehot_in_model_dtype(calculator.model)
        calculator.model.double()
        with torch.no_grad():
            _exact_coupling_coefficients(calculator.model)
    return calculator


def sevennet_float64(calculator, atoms):
    """SevenNet's calculator step in float64: its graph (``unlabeled_atoms_to_graph``, float64 from ASE) given
    to its network and force module without the cast to float32 that ``AtomGraphData.from_numpy_dict`` makes."""
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph

    graph = unlabeled_atoms_to_graph(atoms, calculator.cutoff, with_shift=False)
    data = AtomGraphData(**{key: (torch.from_numpy(value).to(torch.float64 if np.issubdtype(value.dtype, np.floating)
                                                                   else torch.int64)
                                  if isinstance(value, np.ndarray) else value) for key, value in graph.items()})
    results = calculator.output_to_results(calculator.model(data))
    return results["energy"], results["forces"]


def energy_forces(calculator, atoms, dtype):
    atoms = atoms.copy()
    if dtype == torch.float64 and not isinstance(calculator, EquiforceCalculator):
        return sevennet_float64(calculator, atoms)
    atoms.calc = calculator
    return atoms.get_potential_energy(), atoms.get_forces()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/sevennet_agreement.json")
    parser.add_argument("--work", default="runs/imports")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    structures = agreement_structures()
    result = {"machine": describe_machine(), "goals": GOALS, "records": []}
    for precision, dtype in (("float32", torch.float32), ("float64", torch.float64)):
        model_file = os.path.join(args.work, f"sevennet-0-{precision}.pt")
        metadata = import_sevennet("7net-0", model_file, dtype=precision, progress=False)
        ours = EquiforceCalculator(model_file)
        reference = sevennet_reference(precision)
        for name, atoms in structures.items():
            started = time.perf_counter()
            energy_ref, forces_ref = energy_forces(reference, atoms, dtype)
            energy, forces = energy_forces(ours, atoms, dtype)
            n = len(atoms)
            record = {
                "structure": name, "precision": precision, "atoms": n,
                "cell_angles_degrees": [float(x) for x in atoms.cell.cellpar()[3:]],
                "energy_ev": energy, "reference_energy_ev": energy_ref,
                "energy_difference_ev_per_atom": abs(energy - energy_ref) / n,
                "force_mae_ev_per_angstrom": float(np.abs(forces - forces_ref).mean()),
                "force_max_difference_ev_per_angstrom": float(np.abs(forces - forces_ref).max()),
                "reference_force_rms_ev_per_angstrom": float(np.sqrt((forces_ref ** 2).mean())),
                "seconds": time.perf_counter() - started,
            }
            goal = GOALS[precision]
            record["meets_goal"] = bool(record["energy_difference_ev_per_atom"] <= goal["energy_ev_per_atom"] and
                                        record["force_mae_ev_per_angstrom"] <= goal.get("force_mae_ev_per_angstrom",
                                                                                        np.inf))
            result["records"].append(record)
            print(f"{precision} {name:22s} dE {record['energy_difference_ev_per_atom']:.2e} eV/atom  "
                  f"F MAE {record['force_mae_ev_per_angstrom']:.2e}  max {record['force_max_difference_ev_per_angstrom']:.2e} eV/Å"
                  f"  {'ok' if record['meets_goal'] else 'MISSED'}", flush=True)
        result[f"model_{precision}"] = {"checkpoint_sha256": metadata["source"]["checkpoint_sha256"],
                                        "imported_with_sevenn": metadata["source"]["imported_with_sevenn"]}
    write_json(result, args.out)
    print(f"wrote {args.out}")
    return 0 if all(r["meets_goal"] for r in result["records"]) else 1


if __name__ == "__main__":
    sys.exit(main())
