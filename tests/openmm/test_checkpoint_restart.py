"""A run with an equiforce force continues bit for bit from Context.createCheckpoint / loadCheckpoint (Langevin:
the checkpoint holds the random state too), from Simulation.saveCheckpoint / loadCheckpoint, and from
Simulation.saveState / loadState (Verlet: a State holds no random state)."""
import numpy as np
import openmm
import openmm.app as app
import pytest
from openmm import unit

from equiforce.openmm import create_force
from equiforce.pretrained import shipped_model_path
from equiforce.systems import water_box


@pytest.fixture(scope="module")
def water():
    return water_box(8, seed=7)


def simulation_of(topology, positions, integrator, platform="CPU"):
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    system.addForce(create_force(shipped_model_path("water-gfn2"), topology))
    properties = {"Threads": "1"} if platform == "CPU" else {}
    run = app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName(platform), properties)
    run.context.setPositions(positions * unit.nanometer)
    run.context.setVelocitiesToTemperature(300 * unit.kelvin, 3)
    return run


def snapshot(run):
    state = run.context.getState(getPositions=True, getVelocities=True, getEnergy=True)
    return (state.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
            state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond),
            state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))


def assert_bitwise_equal(first, second):
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert first[2] == second[2]


def langevin():
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.5 * unit.femtoseconds)
    integrator.setRandomNumberSeed(11)
    return integrator


def test_context_checkpoint_continues_bit_for_bit(water):
    run = simulation_of(*water, langevin())
    run.step(10)
    checkpoint = run.context.createCheckpoint()
    run.step(15)
    first = snapshot(run)
    run.context.loadCheckpoint(checkpoint)
    run.step(15)
    assert_bitwise_equal(snapshot(run), first)


def test_simulation_checkpoint_file_restarts_in_a_new_simulation(water, tmp_path):
    run = simulation_of(*water, langevin())
    run.step(10)
    run.saveCheckpoint(str(tmp_path / "run.chk"))
    run.step(15)
    first = snapshot(run)
    restarted = simulation_of(*water, langevin())
    restarted.loadCheckpoint(str(tmp_path / "run.chk"))
    restarted.step(15)
    assert_bitwise_equal(snapshot(restarted), first)


def test_saved_state_restarts_a_verlet_run_bit_for_bit(water, tmp_path):
    run = simulation_of(*water, openmm.VerletIntegrator(0.5 * unit.femtoseconds), platform="Reference")
    run.step(10)
    run.saveState(str(tmp_path / "state.xml"))
    run.step(15)
    first = snapshot(run)
    restarted = simulation_of(*water, openmm.VerletIntegrator(0.5 * unit.femtoseconds), platform="Reference")
    restarted.loadState(str(tmp_path / "state.xml"))
    restarted.step(15)
    assert_bitwise_equal(snapshot(restarted), first)
