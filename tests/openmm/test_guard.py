"""GuardReporter: quiet on a healthy run; at a blow-up it stops naming the step and the atoms, writes the last
healthy checkpoint, and every trajectory frame already reported stays readable."""
import mdtraj
import numpy as np
import openmm
import openmm.app as app
import pytest
from openmm import unit

from equiforce.openmm import GuardReporter, SimulationBlowUp, create_force
from equiforce.pretrained import shipped_model_path
from equiforce.systems import equilibrate_classically, water_box


@pytest.fixture(scope="module")
def water():
    topology, grid = water_box(16, seed=5)
    positions, _ = equilibrate_classically(topology, grid, 300.0, time_ps=0.2, seed=5, platform="Reference")  # reproducible
    return topology, positions


def simulation_of(topology, positions):
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    system.addForce(create_force(shipped_model_path("water-gfn2"), topology))
    integrator = openmm.VerletIntegrator(0.5 * unit.femtoseconds)
    simulation = app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName("Reference"))
    simulation.context.setPositions(positions * unit.nanometer)
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    return simulation


def test_a_healthy_run_is_checked_and_not_stopped(water, tmp_path):
    simulation = simulation_of(*water)
    guard = GuardReporter(10, str(tmp_path / "last_good.chk"))
    simulation.reporters.append(guard)
    simulation.step(30)
    assert guard.checks == 3 and guard.last_good_step == 30
    assert not (tmp_path / "last_good.chk").exists()  # written only when needed


def test_overlapping_atoms_stop_the_run_by_name_and_keep_checkpoint_and_frames(water, tmp_path):
    topology, positions = water
    simulation = simulation_of(topology, positions)
    checkpoint = tmp_path / "last_good.chk"
    trajectory = tmp_path / "run.dcd"
    simulation.reporters.append(app.DCDReporter(str(trajectory), 10))
    guard = GuardReporter(10, str(checkpoint))
    simulation.reporters.append(guard)
    simulation.step(20)
    healthy = simulation.context.getState(getPositions=True).getPositions(asNumpy=True)
    broken = healthy.value_in_unit(unit.nanometer).copy()
    broken[4] = broken[0]  # a hydrogen of molecule 2 onto molecule 1's oxygen: the model's energy is +inf here
    simulation.context.setPositions(broken * unit.nanometer)
    with pytest.raises(SimulationBlowUp, match=r"step 20: atom 0 \(O in residue HOH 1\) and atom 4 \(H\d in residue "
                                               r"HOH 2\) are 0 nm apart \(limit 0.05\); the last healthy state "
                                               r"\(step 20\) is in .*last_good.chk"):
        guard.check(simulation)
    frames = mdtraj.load_dcd(str(trajectory), top=mdtraj.Topology.from_openmm(topology))
    assert frames.n_frames == 2  # steps 10 and 20, readable while the run's files are still open
    restored = simulation_of(topology, positions)
    restored.loadCheckpoint(str(checkpoint))
    assert restored.currentStep == 20
    np.testing.assert_array_equal(
        restored.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer),
        healthy.value_in_unit(unit.nanometer))


def test_a_blow_up_during_a_run_stops_it_at_the_next_check(water, tmp_path):
    topology, positions = water
    simulation = simulation_of(topology, positions)
    simulation.reporters.append(GuardReporter(10, str(tmp_path / "last_good.chk")))
    simulation.step(20)
    broken = simulation.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    broken[4] = broken[0] + 0.001  # 0.01 Å from an oxygen: the atoms fly apart within a step
    simulation.context.setPositions(broken * unit.nanometer)
    with pytest.raises(SimulationBlowUp, match=r"step 30: .*atom \d+.*; the last healthy state \(step 20\)"):
        simulation.step(10)


def test_a_force_above_the_limit_names_the_atom(water, tmp_path):
    simulation = simulation_of(*water)
    simulation.reporters.append(GuardReporter(5, str(tmp_path / "last_good.chk"), max_force=1.0))
    with pytest.raises(SimulationBlowUp, match=r"step 5: the force on atom \d+ \(\w+ in residue HOH \d+\) is .* "
                                               r"kJ/mol/nm \(limit 1\); no healthy state was seen"):
        simulation.step(5)
