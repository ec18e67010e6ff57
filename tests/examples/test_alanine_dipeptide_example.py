"""examples/alanine_dipeptide_sevennet.py: the solvated ML/MM system it builds puts exactly the 22 dipeptide atoms
in the ML force, whose energy is the imported SevenNet-0 file's energy of those atoms alone, and MD runs."""
import importlib.util
import math
import os

import numpy as np
import pytest
import torch

pytest.importorskip("sevenn", reason="sevenn is not installed (make install adds it from requirements.txt)")

import openmm  # noqa: E402
from openmm import unit  # noqa: E402

import equiforce  # noqa: E402
from equiforce.units import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "alanine_dipeptide_sevennet.py")


def _load_example():
    spec = importlib.util.spec_from_file_location("alanine_dipeptide_sevennet", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example():
    return _load_example()


@pytest.fixture(scope="module")
def built(example, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model_path = str(tmp_path_factory.mktemp("alanine") / "sevennet-0.pt")
        example.ensure_model(model_path, progress=False)
        topology, positions, forcefield = example.build_solvated()
        system, ml_atoms = example.build_mixed_system(topology, forcefield, model_path)
        simulation = example.make_simulation(topology, system, positions, threads=1)
        yield dict(model_path=model_path, topology=topology, system=system, ml_atoms=ml_atoms,
                   simulation=simulation)
    finally:
        torch.set_num_threads(threads)


def test_dipeptide_is_l_alanine_with_hydrogens_in_water(example, built):
    heavy = {name: xyz for residue, name, _, xyz in example.dipeptide_heavy_atoms() if residue == "ALA"}
    assert example.alanine_chirality(heavy) > 0  # L (S) alanine
    topology = built["topology"]
    residues = [residue.name for residue in topology.residues()]
    assert residues[:3] == ["ACE", "ALA", "NME"]
    assert set(residues[3:]) == {"HOH"}  # neutral: no ions
    assert topology.getNumAtoms() == 22 + 3 * example.count_waters(topology)
    edge = topology.getPeriodicBoxVectors()[0][0].value_in_unit(unit.nanometer)
    assert edge > 2.0  # wider than twice the 1 nm cutoff


def test_mixed_system_has_22_ml_atoms_and_no_constraints_on_them(built):
    ml_atoms = built["ml_atoms"]
    assert ml_atoms == list(range(22))
    system = built["system"]
    ml_set = set(ml_atoms)
    for k in range(system.getNumConstraints()):
        i, j, _ = system.getConstraintParameters(k)
        assert i not in ml_set and j not in ml_set
    # The water stays rigid: 3 constraints per water.
    waters = sum(1 for residue in built["topology"].residues() if residue.name == "HOH")
    assert system.getNumConstraints() == 3 * waters


def test_ml_group_energy_is_the_model_energy_of_the_dipeptide_alone(example, built):
    context = built["simulation"].context
    state = context.getState(getEnergy=True, getPositions=True, groups={example.ML_FORCE_GROUP})
    ml_energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

    module, metadata = equiforce.load_model(built["model_path"])
    positions_nm = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))[built["ml_atoms"]]
    box_nm = np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))
    atoms = list(built["topology"].atoms())
    index_of = {symbol: k for k, symbol in enumerate(metadata["elements"])}
    species = torch.tensor([index_of[atoms[i].element.symbol] for i in built["ml_atoms"]], dtype=torch.long)
    positions = torch.tensor(positions_nm * ANGSTROM_PER_NM, dtype=torch.float32)
    cell = torch.tensor(box_nm * ANGSTROM_PER_NM, dtype=torch.float32)
    with torch.no_grad():
        expected = float(module(positions, species, cell)) * KJ_PER_MOL_PER_EV
    assert ml_energy == pytest.approx(expected, rel=1e-5)
    # The box is far wider than the model's cutoff: without it the energy is the same (no self-images).
    with torch.no_grad():
        alone = float(module(positions, species, None)) * KJ_PER_MOL_PER_EV
    assert alone == pytest.approx(expected, rel=1e-6)


def test_five_md_steps_give_finite_energies(example, built):
    simulation = built["simulation"]
    simulation.minimizeEnergy(maxIterations=20)
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    for _ in range(5):
        simulation.step(1)
        potential, ml, kinetic = example.energies(simulation)
        assert all(math.isfinite(x) for x in (potential, ml, kinetic))
    # The PDB writer's wrapping keeps the dipeptide whole (its bonds are no longer MM forces).
    state = simulation.context.getState(getPositions=True)
    edge = state.getPeriodicBoxVectors()[0][0].value_in_unit(unit.nanometer)
    wrapped = example.whole_residue_positions(built["topology"], state.getPositions(asNumpy=True).value_in_unit(
        unit.nanometer), edge, built["ml_atoms"])
    for bond in built["topology"].bonds():
        i, j = bond[0].index, bond[1].index
        if i < 22 and j < 22:
            assert np.linalg.norm(wrapped[i] - wrapped[j]) < 0.2  # nm
    assert (wrapped[22:].reshape(-1, 3, 3).mean(axis=1) >= 0).all()
    assert (wrapped[22:].reshape(-1, 3, 3).mean(axis=1) < edge).all()
    assert isinstance(simulation.integrator, openmm.LangevinMiddleIntegrator)
    assert simulation.integrator.getStepSize().value_in_unit(unit.femtosecond) == pytest.approx(1.0)
