"""One prepared run for a GPU machine (see ../../shared/GPU.md and the issue on the native plugin).

Writes JSON to $OUT/gpu_checks.json (or --out) step by step, so a run cut short still reports what it did:
  1. OpenMM plugin load failures and platforms;
  2. a tiny TorchForce on the CUDA platform (energy vs the model run directly);
  3. the native neighbour-list op on CUDA against the CPU result (pairs as sets, vectors);
  4. water boxes from 96 to 24 000 atoms: ms/step of the full OpenMM step with and without CUDA graphs, and
     the bare exported model's forward + backward (dynamic and fixed-capacity neighbour lists) in the same run.
Runs on a CPU-only machine too (``--device cpu``, small sizes), which is how it was checked before use.
"""
import argparse
import json
import os
import statistics
import time
import traceback

import numpy as np
import torch


def _median_ms(step, warmup, repeats, sync):
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        sync()
        times.append(1000.0 * (time.perf_counter() - start))
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--molecules", type=int, nargs="+", default=[32, 256, 2048, 8000])
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu_checks.json"))
    args = parser.parse_args()
    result = {"device": args.device, "torch": torch.__version__, "steps": {}}

    def save():
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=1)

    def attempt(name, function):
        try:
            result["steps"][name] = function()
        except Exception:  # record the failure and go on with the next check
            result["steps"][name] = {"error": traceback.format_exc()[-3000:]}
        save()
        print(name, json.dumps(result["steps"][name])[:400], flush=True)

    import openmm
    from openmm import unit

    import equiforce
    from equiforce import ops
    from equiforce.bench import benchmark_model
    from equiforce.openmm import create_force, species_for_atoms
    from equiforce.units import ANGSTROM_PER_NM
    from equiforce.systems import water_box

    platform_name = "CUDA" if args.device == "cuda" else "CPU"
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    model_file = benchmark_model(os.path.join("runs", "gpu", "water-size-model.pt"))  # the shipped water model
    module, metadata = equiforce.load_model(model_file, device=args.device)
    result["model"] = os.path.relpath(model_file)

    attempt("openmm_plugins", lambda: {
        "platforms": [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())],
        "load_failures": list(openmm.Platform.getPluginLoadFailures()),
    })

    def context_for(n_molecules, cuda_graphs):
        topology, positions = water_box(n_molecules, 1.0, seed=0)
        system = openmm.System()
        for atom in topology.atoms():
            system.addParticle(atom.element.mass)
        system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
        system.addForce(create_force(model_file, topology, cuda_graphs=cuda_graphs))
        integrator = openmm.VerletIntegrator(0.5 * unit.femtoseconds)
        context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform_name))
        context.setPositions(positions * unit.nanometer)
        return context, integrator, topology, positions

    def tiny_force():
        context, _, topology, positions = context_for(8, False)
        energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        box = np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.angstrom))
        species = species_for_atoms(list(topology.atoms()), metadata["elements"], "model").to(args.device)
        direct = module(torch.tensor(positions * ANGSTROM_PER_NM, dtype=torch.float32, device=args.device), species,
                        torch.tensor(box, dtype=torch.float32, device=args.device))
        return {"openmm_kJ_mol": energy, "direct_kJ_mol": float(direct) * equiforce.units.KJ_PER_MOL_PER_EV}

    attempt("tiny_torchforce", tiny_force)

    def op_against_cpu():
        rows = []
        for n_molecules in (32, 2048):
            topology, positions = water_box(n_molecules, 1.0, seed=1)
            box = torch.tensor(np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.angstrom)))
            x = torch.tensor(positions * ANGSTROM_PER_NM)
            pairs_cpu, vectors_cpu = ops.neighbor_list(x, 5.0, box)
            pairs_dev, vectors_dev = ops.neighbor_list(x.to(args.device), 5.0, box.to(args.device))
            same = {tuple(p) for p in pairs_cpu.T.tolist()} == {tuple(p) for p in pairs_dev.cpu().T.tolist()}
            rows.append({"atoms": len(x), "pairs": pairs_cpu.shape[1], "same_pairs": same,
                         "vector_norm_sum_diff": float(vectors_cpu.norm(dim=1).sum() - vectors_dev.norm(dim=1).sum())})
        return rows

    attempt("op_vs_cpu", op_against_cpu)

    def timings():
        rows = []
        for n_molecules in args.molecules:
            row = {"atoms": 3 * n_molecules}
            for graphs in (False, True):
                try:
                    context, integrator, _, _ = context_for(n_molecules, graphs)
                    row[f"openmm_ms_per_step_graphs_{graphs}"] = _median_ms(lambda: integrator.step(10), 2, 5,
                                                                            lambda: context.getState()) / 10
                except Exception as error:
                    row[f"openmm_graphs_{graphs}_error"] = str(error)[-500:]
            topology, positions = water_box(n_molecules, 1.0, seed=0)
            box = torch.tensor(np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.angstrom)),
                               dtype=torch.float32, device=args.device)
            species = species_for_atoms(list(topology.atoms()), metadata["elements"], "model").to(args.device)
            x0 = torch.tensor(positions * ANGSTROM_PER_NM, dtype=torch.float32, device=args.device)
            for capacity in (0, int(3 * n_molecules * 80)):
                def bare():
                    x = x0.clone().requires_grad_(True)
                    torch.autograd.grad(module(x, species, box, capacity), x)
                row[f"bare_fwd_bwd_ms_max_pairs_{capacity}"] = _median_ms(bare, 3, 5, sync)
            rows.append(row)
            result["steps"]["timings_partial"] = rows
            save()
        return rows

    attempt("timings", timings)


if __name__ == "__main__":
    main()
