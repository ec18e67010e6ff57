"""Committee files: the mean energy of the members (each equal to itself exported alone), forces = -∇ mean,
run by OpenMM unchanged; the members' spread is invariant, zero for identical members, logged during MD and able
to stop a run by naming the atom; members that cannot share a neighbour list are refused by name."""
import csv
import os

import numpy as np
import openmm
import openmm.app as app
import pytest
import torch
from ase import Atoms
from e3nn import o3
from openmm import unit

import equiforce
from conftest import small_config, water_tensors
from equiforce.calculator import EquiforceCalculator
from equiforce.checkpoint import model_from_checkpoint, save_checkpoint
from equiforce.cli import main as cli_main
from equiforce.committee import (CommitteeEvaluator, CommitteeReporter, CommitteeSpreadExceeded, committee_spread,
                                 export_committee, force_disagreement, spread_of_members)
from equiforce.hashing import file_sha256
from equiforce.openmm import create_force
from equiforce.systems import water_box
from equiforce.units import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV

SEEDS = (11, 12)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for this module: on a shared 2-core machine a second thread mostly spins and waits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def member(seed, **overrides):
    torch.manual_seed(seed)
    return equiforce.EquivariantPotential(small_config(lmax=1, **overrides)).to(torch.float64)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Members A, B and A again (identical twins) saved as checkpoints, each exported alone, and their committee
    written by ``equiforce committee`` (float64)."""
    folder = tmp_path_factory.mktemp("committee")
    checkpoints, singles = [], []
    for seed in SEEDS:
        checkpoint = str(folder / f"member{seed}.ckpt")
        save_checkpoint(member(seed), checkpoint)
        single = str(folder / f"member{seed}.pt")
        equiforce.export_model(model_from_checkpoint(checkpoint), single, dtype="float64")
        checkpoints.append(checkpoint)
        singles.append(single)
    committee = str(folder / "committee.pt")
    members = [checkpoints[0], checkpoints[1], checkpoints[0]]
    assert cli_main(["committee", *members, "-o", committee, "--dtype", "float64"]) == 0
    return {"checkpoints": checkpoints, "members": members, "singles": [singles[0], singles[1], singles[0]],
            "committee": committee}


@pytest.fixture(scope="module")
def evaluator(files):
    """The committee file, loaded once (TorchScript optimises each method on its first calls)."""
    return CommitteeEvaluator(files["committee"])


@pytest.fixture(scope="module")
def singles(files):
    """The members exported alone (A, B, A), as one committee of separate files (each its own neighbour list)."""
    return CommitteeEvaluator(files["singles"])


def energies_and_forces(module, positions, species, cell):
    x = positions.clone().requires_grad_(True)
    energy = module(x, species, cell)
    (gradient,) = torch.autograd.grad(energy, x)
    return energy.detach(), -gradient


def test_metadata_names_every_member_and_its_checkpoint_hash(files):
    metadata = equiforce.read_metadata(files["committee"])
    entry = metadata["committee"]
    assert entry["num_members"] == 3 and entry["energy"] == "mean"
    assert [m["source"] for m in entry["members"]] == [os.path.abspath(p) for p in files["members"]]
    assert [m["sha256"] for m in entry["members"]] == [file_sha256(p) for p in files["members"]]
    assert metadata["elements"] == ["H", "O"] and metadata["cutoff"] == 4.0 and metadata["dtype"] == "float64"
    assert metadata["architecture"] == "equiforce-committee"


@pytest.mark.parametrize("periodic", [True, False])
def test_members_equal_each_member_exported_alone_and_forward_is_their_mean(evaluator, singles, periodic):
    positions, species, cell = water_tensors(8, seed=1)
    cell = cell if periodic else None
    committee = evaluator.committee
    alone = [energies_and_forces(m.module, positions, species, cell) for m in singles.members]
    members = committee.member_energies(positions, species, cell)  # [K] eV
    torch.testing.assert_close(members, torch.stack([e for e, _ in alone]), rtol=1e-12, atol=1e-12)
    energies, forces = committee.member_forces(positions, species, cell)  # [K], [K, N, 3]
    torch.testing.assert_close(energies, members, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(forces, torch.stack([f for _, f in alone]), rtol=1e-10, atol=1e-10)
    mean_energy, mean_forces = energies_and_forces(committee, positions, species, cell)
    torch.testing.assert_close(mean_energy, members.mean(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mean_forces, forces.mean(dim=0), rtol=1e-10, atol=1e-10)
    assert float(members.std()) > 1e-3  # different seeds: the test compares two different members


def test_forces_are_minus_the_central_difference_of_the_mean_energy(evaluator):
    positions, species, cell = water_tensors(8, seed=2)
    committee = evaluator.committee
    _, forces = energies_and_forces(committee, positions, species, cell)
    step = 1e-5  # Å
    for atom, axis in [(0, 0), (1, 2), (5, 1), (13, 0)]:
        shifted = [positions.clone(), positions.clone()]
        shifted[0][atom, axis] += step
        shifted[1][atom, axis] -= step
        with torch.no_grad():
            numeric = -(committee(shifted[0], species, cell) - committee(shifted[1], species, cell)) / (2 * step)
        torch.testing.assert_close(forces[atom, axis], numeric, rtol=1e-6, atol=1e-7)


def test_fixed_capacity_neighbour_list_gives_the_same_members_and_nan_when_it_overflows(evaluator):
    positions, species, cell = water_tensors(8, seed=1)
    committee = evaluator.committee
    dynamic = committee.member_energies(positions, species, cell)
    torch.testing.assert_close(committee.member_energies(positions, species, cell, 4000), dynamic,
                               rtol=1e-12, atol=1e-12)
    assert torch.isnan(committee(positions, species, cell, 10))


def test_openmm_runs_the_committee_file_as_its_mean_in_kj_per_mol(simulation, evaluator):
    topology, positions_nm = water_box(8, seed=3)
    simulation.context.setPositions(positions_nm * unit.nanometer)
    state = simulation.context.getState(getEnergy=True, getForces=True)
    box = np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer))
    numbers = [a.element.atomic_number for a in topology.atoms()]
    energies, forces = evaluator.member_energies_and_forces(positions_nm * ANGSTROM_PER_NM, numbers,
                                                            box * ANGSTROM_PER_NM)
    openmm_energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert openmm_energy == pytest.approx(energies.mean() * KJ_PER_MOL_PER_EV, rel=1e-10)
    openmm_forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    np.testing.assert_allclose(openmm_forces, forces.mean(axis=0) * KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM,
                               rtol=1e-8, atol=1e-7)


def test_ase_calculator_and_a_list_of_single_files_agree_with_the_committee_file(files, evaluator, singles):
    positions, species, cell = water_tensors(8, seed=4)
    atoms = Atoms(numbers=[8 if s == 1 else 1 for s in species.tolist()], positions=positions.numpy(),
                  cell=cell.numpy(), pbc=True)
    atoms.calc = EquiforceCalculator(files["committee"])
    from_file = committee_spread(evaluator, atoms)
    from_singles = committee_spread(singles, atoms)
    assert atoms.get_potential_energy() == pytest.approx(from_file.energy_mean_ev, rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), from_file.mean_forces_ev_per_angstrom, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(from_singles.member_energies_ev, from_file.member_energies_ev, rtol=1e-12)
    np.testing.assert_allclose(from_singles.force_std_ev_per_angstrom, from_file.force_std_ev_per_angstrom,
                               rtol=1e-9, atol=1e-12)


def test_spread_is_the_members_std_and_invariant_under_rotation_and_translation(evaluator):
    positions, species, _ = water_tensors(8, seed=5)
    numbers = [8 if s == 1 else 1 for s in species.tolist()]
    energies, forces = evaluator.member_energies_and_forces(positions.numpy(), numbers)
    spread = evaluator.spread(positions.numpy(), numbers)
    mean = forces.mean(axis=0)
    by_hand = np.sqrt(((forces - mean) ** 2).sum(axis=2).mean(axis=0))  # [N] eV/Å
    np.testing.assert_allclose(spread.force_std_ev_per_angstrom, by_hand, rtol=1e-12)
    # members A, B, A: the population std of (a, b, a) is |a - b| sqrt(2) / 3
    assert spread.energy_std_ev == pytest.approx(abs(energies[0] - energies[1]) * np.sqrt(2) / 3, rel=1e-10)
    assert spread.energy_std_ev_per_atom == pytest.approx(spread.energy_std_ev / len(numbers), rel=1e-12)
    assert spread.max_force_std_atom == int(np.argmax(by_hand)) and spread.max_force_std_ev_per_angstrom > 1e-3
    torch.manual_seed(7)
    for _ in range(2):
        rotation = o3.rand_matrix(dtype=torch.float64)
        shift = torch.randn(3, dtype=torch.float64) * 3.0  # Å
        moved = evaluator.spread((positions @ rotation.T + shift).numpy(), numbers)
        np.testing.assert_allclose(moved.force_std_ev_per_angstrom, spread.force_std_ev_per_angstrom,
                                   rtol=1e-9, atol=1e-12)
        assert moved.energy_std_ev == pytest.approx(spread.energy_std_ev, rel=1e-9)


def test_force_disagreement_is_the_largest_atomic_spread_of_each_frame(files, evaluator):
    frames = []
    for seed in (1, 2, 3):
        positions, species, cell = water_tensors(8, seed=seed)
        frames.append(Atoms(numbers=[8 if s == 1 else 1 for s in species.tolist()], positions=positions.numpy(),
                            cell=cell.numpy(), pbc=True))
    values = force_disagreement(evaluator, frames)
    assert values.shape == (3,)
    expected = [evaluator.spread(a.positions, a.numbers, np.asarray(a.cell)).max_force_std_ev_per_angstrom
                for a in frames]
    np.testing.assert_allclose(values, expected, rtol=1e-12)
    frames[1].numbers[4] = 6  # carbon
    with pytest.raises(ValueError, match=r"frame 1: atom 4 is element C; .*committee.pt knows only \['H', 'O'\]"):
        force_disagreement(evaluator, frames)


def test_identical_members_give_identical_results_and_zero_spread(evaluator):
    positions, species, cell = water_tensors(8, seed=1)
    numbers = [8 if s == 1 else 1 for s in species.tolist()]
    energies, forces = evaluator.member_energies_and_forces(positions.numpy(), numbers, cell.numpy())
    assert energies[0] == energies[2] and np.array_equal(forces[0], forces[2])  # members 0 and 2 are both A
    twins = spread_of_members(energies[[0, 2]], forces[[0, 2]])
    assert twins.energy_std_ev == 0.0 and twins.max_force_std_ev_per_angstrom == 0.0
    assert spread_of_members(energies[:2], forces[:2]).max_force_std_ev_per_angstrom > 1e-3  # A and B differ


def test_members_of_another_cutoff_or_element_order_are_refused_by_name(files, tmp_path):
    other = str(tmp_path / "short.ckpt")
    save_checkpoint(member(3, cutoff=3.5, num_layers=1), other)
    with pytest.raises(ValueError, match=r"committee member 1 \(.*short.ckpt\) has a cutoff of 3.5 Å, but member 0 "
                                         r"\(.*member11.ckpt\) has 4.0 Å"):
        export_committee([files["checkpoints"][0], other], str(tmp_path / "bad.pt"))
    first = member(4, num_layers=1)
    swapped = member(3, elements=["O", "H"], num_layers=1)
    with pytest.raises(ValueError, match=r"committee member 1 \(EquivariantPotential object\) knows elements "
                                         r"\['O', 'H'\] \(the same, in another order\), but member 0"):
        export_committee([first, swapped], str(tmp_path / "bad.pt"))
    with pytest.raises(ValueError, match=r"member 2 .* knows elements \['H', 'O', 'C'\], but member 0"):
        export_committee([first, first, member(5, elements=["H", "O", "C"], num_layers=1)], str(tmp_path / "bad.pt"))
    assert not (tmp_path / "bad.pt").exists()
    with pytest.raises(ValueError, match=r"member11.pt is a single model, not a committee file"):
        CommitteeEvaluator(files["singles"][0])


@pytest.fixture(scope="module")
def simulation(files):
    """8 water molecules in a periodic box run by the committee file (Reference platform), built once."""
    topology, positions_nm = water_box(8, seed=3)
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    system.addForce(create_force(files["committee"], topology))
    integrator = openmm.VerletIntegrator(0.25 * unit.femtoseconds)
    return app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName("Reference"))


def restart(simulation):
    topology, positions_nm = water_box(8, seed=3)
    simulation.context.setPositions(positions_nm * unit.nanometer)
    simulation.context.setTime(0.0)
    simulation.currentStep = 0
    simulation.reporters = []
    return topology


def test_reporter_writes_csv_and_stops_past_the_threshold_naming_the_atom(simulation, evaluator, tmp_path):
    topology = restart(simulation)
    log = tmp_path / "spread.csv"
    reporter = CommitteeReporter(evaluator, 2, file=str(log))
    simulation.reporters.append(reporter)
    simulation.step(4)
    reporter.close()
    with open(log) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [2, 4] and len(reporter.records) == 2
    assert float(rows[1]["time_ps"]) == pytest.approx(0.001)
    # the last row is the spread of the current state, converted to kJ/mol and kJ/mol/nm
    state = simulation.context.getState(getPositions=True)
    box = np.array(state.getPeriodicBoxVectors().value_in_unit(unit.nanometer)) * ANGSTROM_PER_NM
    spread = evaluator.spread(
        state.getPositions(asNumpy=True).value_in_unit(unit.nanometer) * ANGSTROM_PER_NM,
        [a.element.atomic_number for a in topology.atoms()], box)
    assert float(rows[1]["energy_std_kj_per_mol"]) == pytest.approx(spread.energy_std_ev * KJ_PER_MOL_PER_EV,
                                                                     rel=1e-8)
    assert float(rows[1]["max_force_std_kj_per_mol_nm"]) == pytest.approx(
        spread.max_force_std_ev_per_angstrom * KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM, rel=1e-8)
    worst = spread.max_force_std_atom
    assert int(rows[1]["atom"]) == worst

    # a threshold below the spread stops the next report, naming step, spread and atom; the row is written first
    log2 = tmp_path / "stopped.csv"
    threshold = 0.5 * spread.max_force_std_ev_per_angstrom
    stopper = CommitteeReporter(evaluator, 2, file=str(log2), threshold=threshold)
    simulation.reporters = [stopper]
    with pytest.raises(CommitteeSpreadExceeded, match=r"step 6 \(t = 0.0015 ps\): the committee's force spread on "
                                                      r"atom \d+ \((O|H\d?) in residue HOH \d+\) is [\d.]+ eV/Å "
                                                      r"\([\d.]+ kJ/mol/nm\), above the threshold of") as stopped:
        simulation.step(10)
    assert simulation.currentStep == 6 and stopped.value.spread_ev_per_angstrom > threshold
    with open(log2) as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [6]


def test_reporter_on_an_ml_subset_numbers_atoms_as_the_system(simulation, evaluator):
    topology = restart(simulation)
    everyone = CommitteeReporter(evaluator, 1)
    everyone.check(simulation)
    order = list(range(topology.getNumAtoms()))[::-1]  # the same atoms, listed backwards
    backwards = CommitteeReporter(evaluator, 1, atoms=order)
    backwards.check(simulation)
    assert backwards.records[0]["atom"] == everyone.records[0]["atom"]
    assert backwards.records[0]["max_force_std_kj_per_mol_nm"] == pytest.approx(
        everyone.records[0]["max_force_std_kj_per_mol_nm"], rel=1e-10)
