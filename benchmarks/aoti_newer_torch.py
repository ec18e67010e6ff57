"""Does a package compiled by torch 2.9.1 run under a newer torch? (issue 30: which torch versions each path runs)

Two phases, two environments:

    .venv/bin/python benchmarks/aoti_newer_torch.py prepare          # torch 2.9.1: packages, inputs, reference outputs
    /tmp/venv210/bin/python benchmarks/aoti_newer_torch.py check [--no-equiforce]   # another torch, its own venv

``prepare`` compiles the shipped water model (float32) twice: with equiforce's native ops (the default) and
with e3nn's plain code (``fused_convolution=False, radial_table_knots=None``), computes a 96-atom water box's
neighbour list and the packages' (and the TorchScript file's) energy and forces under 2.9.1, and saves them.
``check`` loads each package with ``torch._inductor.aoti_load_package`` (and the TorchScript file with
``torch.jit.load``), feeds the same inputs and compares; a failure is recorded with its message. With
``--no-equiforce`` nothing of equiforce is imported (a venv with only torch + numpy); otherwise equiforce must be
installed in that venv, built for its torch (``pip install --no-build-isolation --no-deps .`` from a copy of the
repository: building in place would replace the 2.9.1 library of ``.venv``). Writes
``benchmarks/results/aoti_newer_torch.json`` (``check`` adds its torch version to it).
"""
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "runs", "aoti_newer_torch")
RESULT = os.path.join(ROOT, "benchmarks", "results", "aoti_newer_torch.json")


def prepare() -> None:
    import numpy as np
    import torch

    import equiforce  # noqa: F401  (native ops)
    from equiforce.export import aoti_from_torchscript
    from equiforce.openmm._pythonforce import AOTIModel
    from equiforce.systems import water_box
    from equiforce.units import nm_to_angstrom

    torch.set_num_threads(1)
    os.makedirs(WORK, exist_ok=True)
    shipped = os.path.join(ROOT, "python", "equiforce", "models", "water-gfn2.pt")
    packages = {"native-ops": dict(), "plain": dict(fused_convolution=False, radial_table_knots=None)}
    topology, positions_nm = water_box(32, 1.0, seed=3)
    positions = torch.tensor(nm_to_angstrom(positions_nm), dtype=torch.float32)  # [96, 3] Å
    box = topology.getPeriodicBoxVectors()
    cell = torch.tensor(nm_to_angstrom(np.array([[v[i]._value for i in range(3)] for v in box])), dtype=torch.float32)
    species = torch.tensor([1 if a.element.symbol == "O" else 0 for a in topology.atoms()], dtype=torch.long)
    record = {"prepared_with_torch": torch.__version__, "atoms": int(positions.shape[0]), "packages": {}}
    for name, options in packages.items():
        path = os.path.join(WORK, f"{name}.pt2")
        if not os.path.exists(path):
            aoti_from_torchscript(shipped, path, threads=1, **options)
        model = AOTIModel(path)
        edge_index, offsets = model.neighbors(positions, cell)
        energy, forces = model.runner(positions, species, edge_index, offsets)
        torch.save({"positions": positions, "species": species, "edge_index": edge_index, "offsets": offsets,
                    "energy": energy.detach(), "forces": forces.detach()}, os.path.join(WORK, f"{name}.inputs.pt"))
        record["packages"][name] = {"file": os.path.relpath(path, ROOT), "bytes": os.path.getsize(path),
                                    "options": options, "energy_eV_torch_2_9_1": float(energy)}
    record["openmm_pythonforce"] = openmm_energy_and_forces(os.path.join(WORK, "native-ops.pt2"))[0]
    # The TorchScript file on the same box, for the same question about the first path.
    from equiforce.export import load_model

    module, _ = load_model(shipped)
    x = positions.clone().requires_grad_(True)
    energy = module(x, species, cell)
    forces = -torch.autograd.grad(energy, x)[0]
    torch.save({"positions": positions, "species": species, "cell": cell, "energy": energy.detach(),
                "forces": forces}, os.path.join(WORK, "torchscript.inputs.pt"))
    record["torchscript"] = {"file": os.path.relpath(shipped, ROOT), "energy_eV_torch_2_9_1": float(energy)}
    with open(RESULT, "w") as handle:
        json.dump(record, handle, indent=1)
    print(json.dumps(record, indent=1))


def openmm_energy_and_forces(package: str):
    """(energy kJ/mol, forces [96, 3] kJ/mol/nm as a list) of the 32-water box of ``prepare`` through
    ``create_pythonforce`` on OpenMM's Reference platform."""
    import numpy as np
    import openmm
    from openmm import unit

    from equiforce.openmm import create_pythonforce
    from equiforce.systems import water_box

    topology, positions_nm = water_box(32, 1.0, seed=3)
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    system.addForce(create_pythonforce(package, topology))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions_nm * unit.nanometer)
    state = context.getState(getEnergy=True, getForces=True)
    forces = np.asarray(state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    return state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole), forces.tolist()


def check() -> None:
    import torch
    import torch._inductor
    import torch._inductor.codecache  # noqa: F401  (aoti_load_package needs it imported, in 2.10 at least)

    torch.set_num_threads(1)
    with open(RESULT) as handle:
        record = json.load(handle)
    runs = record.setdefault("checks", {})
    with_equiforce = "--no-equiforce" not in sys.argv
    entry = runs[f"torch {torch.__version__}, {'with' if with_equiforce else 'without'} equiforce"] = {}
    if with_equiforce:  # equiforce built for this torch (in that venv): registers the native and traceable ops
        import equiforce.export  # noqa: F401

        entry["equiforce"] = os.path.dirname(equiforce.export.__file__)
    for name in record["packages"]:
        saved = torch.load(os.path.join(WORK, f"{name}.inputs.pt"), weights_only=True)
        try:
            runner = torch._inductor.aoti_load_package(os.path.join(WORK, f"{name}.pt2"))
            inputs = (saved["positions"], saved["species"], saved["edge_index"], saved["offsets"])
            energy, forces = runner(*inputs)
            start = time.perf_counter()
            for _ in range(20):
                runner(*inputs)
            entry[name] = {"runs": True, "energy_difference_eV": float(energy - saved["energy"]),
                           "max_force_difference_eV_per_A": float((forces - saved["forces"]).abs().max()),
                           "ms_per_call": 1000 * (time.perf_counter() - start) / 20}
        except Exception as error:  # recorded, not hidden: this is what the check is for
            entry[name] = {"runs": False, "error": f"{type(error).__name__}: {str(error)[:600]}"}
    if with_equiforce:
        try:
            energy, _ = openmm_energy_and_forces(os.path.join(WORK, "native-ops.pt2"))
            entry["openmm_pythonforce"] = {"runs": True, "energy_kj_per_mol": energy,
                                           "energy_difference_kj_per_mol": energy - record["openmm_pythonforce"]}
        except Exception as error:
            entry["openmm_pythonforce"] = {"runs": False, "error": f"{type(error).__name__}: {str(error)[:600]}"}
    saved = torch.load(os.path.join(WORK, "torchscript.inputs.pt"), weights_only=True)
    try:
        module = torch.jit.load(os.path.join(ROOT, record["torchscript"]["file"])).eval()
        x = saved["positions"].clone().requires_grad_(True)
        energy = module(x, saved["species"], saved["cell"])
        forces = -torch.autograd.grad(energy, x)[0]
        entry["torchscript"] = {"runs": True, "energy_difference_eV": float(energy.detach() - saved["energy"]),
                                "max_force_difference_eV_per_A": float((forces - saved["forces"]).abs().max())}
    except Exception as error:
        entry["torchscript"] = {"runs": False, "error": f"{type(error).__name__}: {str(error)[:600]}"}
    with open(RESULT, "w") as handle:
        json.dump(record, handle, indent=1)
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    {"prepare": prepare, "check": check}[sys.argv[1]]()
