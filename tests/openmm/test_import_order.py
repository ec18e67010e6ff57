"""A script that imports openmm before torch still gets working equiforce forces: equiforce loads the openmm-torch
plugins that failed at openmm's import (they need torch's libraries)."""
import subprocess
import sys

OPENMM_FIRST = r'''
import openmm                      # before torch: openmm-torch's plugins fail to load here
from openmm import unit
from equiforce.openmm import create_force
from equiforce.pretrained import shipped_model_path
from equiforce.systems import water_box
topology, positions = water_box(4, seed=0)
system = openmm.System()
for atom in topology.atoms():
    system.addParticle(atom.element.mass)
system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
system.addForce(create_force(shipped_model_path("water-gfn2"), topology))
context = openmm.Context(system, openmm.VerletIntegrator(0.0005), openmm.Platform.getPlatformByName("Reference"))
context.setPositions(positions * unit.nanometer)
print(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
'''


def test_openmm_imported_before_torch(tmp_path):
    script = tmp_path / "openmm_first.py"
    script.write_text(OPENMM_FIRST)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip().splitlines()[-1]) < 0.0  # kJ/mol, a bound water box
