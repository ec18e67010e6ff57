"""A System holding equiforce forces survives save_system / load_system in a fresh process with the same energy;
a changed model file or a foreign TorchForce is refused by name. (XmlSerializer.deserialize itself crashes with any
TorchForce in the pinned wheels: benchmarks/long_runs/serialization_fault.py.)"""
import json
import subprocess
import sys

import openmm
import pytest
from openmm import unit

from equiforce.openmm import create_force, load_system, save_system
from equiforce.pretrained import shipped_model_path
from equiforce.systems import tip3pfb_system, water_box

ENERGY_IN_A_FRESH_PROCESS = r'''
import json, sys
import numpy as np, openmm
from openmm import unit
from equiforce.openmm import load_system
system = load_system(sys.argv[1])
context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
context.setPositions(np.load(sys.argv[2]) * unit.nanometer)
state = context.getState(getEnergy=True)
ml = context.getState(getEnergy=True, groups={3})
print(json.dumps([state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                  ml.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole), system.getNumForces()]))
'''


def energies(system, positions):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions * unit.nanometer)
    total = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    ml = context.getState(getEnergy=True, groups={3}).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    return total, ml


@pytest.fixture()
def mixed_system(tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(open(shipped_model_path("water-gfn2"), "rb").read())
    topology, positions = water_box(8, seed=1)
    system = tip3pfb_system(topology)
    system.addForce(create_force(str(model), topology, atoms=range(6), force_group=3))  # two molecules under ML
    return system, positions, model


def test_round_trip_in_a_fresh_process_gives_the_same_energy(mixed_system, tmp_path):
    import numpy as np

    system, positions, _ = mixed_system
    total, ml = energies(system, positions)
    path = tmp_path / "system.xml"
    save_system(system, str(path))
    np.save(tmp_path / "positions.npy", positions)
    done = subprocess.run([sys.executable, "-c", ENERGY_IN_A_FRESH_PROCESS, str(path), str(tmp_path / "positions.npy")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded_total, loaded_ml, n_forces = json.loads(done.stdout.strip().splitlines()[-1])
    assert n_forces == system.getNumForces()
    assert loaded_total == total and loaded_ml == ml and ml != 0.0


def test_forces_come_back_in_their_saved_order(mixed_system, tmp_path):
    system, positions, _ = mixed_system
    system.addForce(openmm.CMMotionRemover())  # a force after the equiforce one
    path = tmp_path / "system.xml"
    save_system(system, str(path))
    loaded = load_system(str(path))
    kinds = [loaded.getForce(i).getForceGroup() for i in range(loaded.getNumForces())]
    assert kinds == [system.getForce(i).getForceGroup() for i in range(system.getNumForces())]
    assert energies(loaded, positions) == energies(system, positions)


def test_a_changed_model_file_is_refused(mixed_system, tmp_path):
    system, _, model = mixed_system
    path = tmp_path / "system.xml"
    save_system(system, str(path))
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="model.pt is not the model file the force was made with"):
        load_system(str(path))


def test_a_foreign_torch_force_is_refused_and_nothing_is_written(tmp_path):
    import openmmtorch
    import torch

    class Square(torch.nn.Module):
        def forward(self, positions):
            return (positions ** 2).sum()

    system = openmm.System()
    system.addParticle(1.0)
    system.addForce(openmmtorch.TorchForce(torch.jit.script(Square())))
    with pytest.raises(ValueError, match="force 0 .* TorchForce that equiforce did not make"):
        save_system(system, str(tmp_path / "system.xml"))
    assert not (tmp_path / "system.xml").exists()
