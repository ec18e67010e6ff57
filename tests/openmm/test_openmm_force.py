"""OpenMM integration: TorchForce energies and forces equal the model's, ML/MM, openmm-ml, bad input, NVE."""
import numpy as np
import pytest
import torch
import openmm
import openmm.app as app
from ase import units as ase_units
from openmm import unit
from openmmml import MLPotential

from equiforce.openmm import create_force
from equiforce.systems import classical_water_system, water_box
from conftest import energy_and_forces

# Independent of equiforce.units (which uses openmm.unit): ASE's CODATA values.
EV_TO_KJ_MOL = ase_units.eV / (ase_units.kJ / ase_units.mol)
NM_TO_ANGSTROM = ase_units.nm / ase_units.Angstrom


def _species(topology):
    return torch.tensor([1 if atom.element.symbol == "O" else 0 for atom in topology.atoms()])


def _box_angstrom(topology):
    return torch.tensor(np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)) * NM_TO_ANGSTROM)


def _openmm_energy_forces(system, positions_nm, platform="Reference"):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    context.setPositions(positions_nm * unit.nanometer)
    state = context.getState(getEnergy=True, getForces=True)
    return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))


def _system_with(force, topology):
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    if topology.getPeriodicBoxVectors() is not None:
        system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    system.addForce(force)
    return system


def _expected(model, positions_nm, species, cell):
    energy, forces = energy_and_forces(model, torch.tensor(positions_nm * NM_TO_ANGSTROM), species, cell)
    return float(energy) * EV_TO_KJ_MOL, forces.numpy() * EV_TO_KJ_MOL * NM_TO_ANGSTROM


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
@pytest.mark.parametrize("periodic", [True, False])
def test_openmm_energy_and_forces_equal_the_model_after_unit_conversion(exported_model, platform, periodic):
    path, model = exported_model
    topology, positions = water_box(8, 1.0, seed=4)
    cell = _box_angstrom(topology) if periodic else None
    if not periodic:
        topology.setPeriodicBoxVectors(None)
    energy, forces = _openmm_energy_forces(_system_with(create_force(path, topology), topology), positions, platform)
    expected_energy, expected_forces = _expected(model, positions, _species(topology), cell)
    assert energy == pytest.approx(expected_energy, rel=1e-7, abs=1e-7)
    np.testing.assert_allclose(forces, expected_forces, rtol=1e-6, atol=1e-6 * np.abs(expected_forces).max())


def test_precision_override_runs_the_model_in_float32(exported_model):
    path, model = exported_model
    topology, positions = water_box(8, 1.0, seed=4)
    energy, forces = _openmm_energy_forces(
        _system_with(create_force(path, topology, precision="float32"), topology), positions)
    expected_energy, expected_forces = _expected(model, positions, _species(topology), _box_angstrom(topology))
    assert energy != expected_energy  # really ran in single precision ...
    assert energy == pytest.approx(expected_energy, rel=1e-5)  # ... and agrees to single precision
    np.testing.assert_allclose(forces, expected_forces, atol=1e-3 * np.abs(expected_forces).max())


def test_ml_subset_sees_only_its_atoms(exported_model):
    path, model = exported_model
    topology, positions = water_box(8, 1.0, seed=4)
    atoms = [3, 4, 5, 9, 10, 11]
    energy, forces = _openmm_energy_forces(_system_with(create_force(path, topology, atoms=atoms), topology), positions)
    expected_energy, expected_forces = _expected(model, positions[atoms], _species(topology)[atoms],
                                                 _box_angstrom(topology))
    assert energy == pytest.approx(expected_energy, rel=1e-7)
    np.testing.assert_allclose(forces[atoms], expected_forces, rtol=1e-6, atol=1e-8)
    others = [i for i in range(topology.getNumAtoms()) if i not in atoms]
    assert np.all(forces[others] == 0)


def test_small_box_narrower_than_twice_the_cutoff_is_handled_with_all_images(exported_model):
    """8 waters at liquid density: a 6.2 Å box, narrower than 2 × 4 Å. Compare with the 2×2×2 supercell."""
    path, _ = exported_model
    topology, positions = water_box(8, 1.0, seed=4)
    small, _ = _openmm_energy_forces(_system_with(create_force(path, topology), topology), positions)
    big_topology, _ = water_box(64, 1.0, seed=0)  # 2 × 2 × 2 replicas: the same box edge doubled
    edge = topology.getPeriodicBoxVectors()[0][0].value_in_unit(unit.nanometer)
    replicas = [positions + edge * np.array(s) for s in np.ndindex(2, 2, 2)]
    big, _ = _openmm_energy_forces(_system_with(create_force(path, big_topology), big_topology),
                                   np.concatenate(replicas))
    assert big == pytest.approx(8 * small, rel=1e-9)


def test_mlpotential_create_system_and_mixed_system(exported_model):
    path, model = exported_model
    topology, positions = water_box(8, 1.0, seed=4)
    potential = MLPotential("equiforce", modelPath=path)
    system = potential.createSystem(topology)
    energy, _ = _openmm_energy_forces(system, positions)
    expected_energy, _ = _expected(model, positions, _species(topology), _box_angstrom(topology))
    assert energy == pytest.approx(expected_energy, rel=1e-7)

    mm_system = classical_water_system(topology, cutoff_nm=0.3)
    ml_atoms = [0, 1, 2, 3, 4, 5]
    ml_group = 5
    mixed = potential.createMixedSystem(topology, mm_system, ml_atoms, forceGroup=ml_group)
    ml_forces = [f for f in mixed.getForces() if f.getForceGroup() == ml_group]
    assert [f.getName().split(":")[0] for f in ml_forces] == ["equiforce"]  # named for save_system's recipes
    assert ml_forces[0].usesPeriodicBoundaryConditions()
    context = openmm.Context(mixed, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions * unit.nanometer)
    state = context.getState(getEnergy=True, getForces=True)
    assert np.isfinite(state.getPotentialEnergy()._value) and np.all(np.isfinite(state.getForces(asNumpy=True)._value))
    # the ML force of the mixed system is the model evaluated on the ML atoms alone
    ml_energy = context.getState(getEnergy=True, groups={ml_group}).getPotentialEnergy()
    expected_ml, _ = _expected(model, positions[ml_atoms], _species(topology)[ml_atoms], _box_angstrom(topology))
    assert ml_energy.value_in_unit(unit.kilojoule_per_mole) == pytest.approx(expected_ml, rel=1e-7)


def test_unknown_element_is_named_with_its_first_atom(exported_model):
    path, _ = exported_model
    topology, _ = water_box(2, 1.0)
    residue = topology.addResidue("NA", next(topology.chains()))
    topology.addAtom("NA", app.element.sodium, residue)
    topology.addAtom("NA", app.element.sodium, residue)
    with pytest.raises(ValueError, match=r"atom 6 .*element Na"):
        create_force(path, topology)


def test_model_file_from_an_incompatible_version_is_refused_at_system_creation(exported_model, tmp_path):
    from equiforce.export import ModelFileError
    from conftest import rewrite_metadata

    path, _ = exported_model
    old = str(tmp_path / "old.pt")
    rewrite_metadata(path, old, format_version=0, equiforce_version="0.0.1")
    topology, _ = water_box(2, 1.0)
    with pytest.raises(ModelFileError, match=r"equiforce 0\.0\.1 in model format 0.*reads formats 2, 3"):
        MLPotential("equiforce", modelPath=old).createSystem(topology)


def test_bad_atom_subsets_are_named(exported_model):
    path, _ = exported_model
    topology, _ = water_box(2, 1.0)
    with pytest.raises(ValueError, match="index 17"):
        create_force(path, topology, atoms=[0, 17])
    with pytest.raises(ValueError, match="atom 1 more than once"):
        create_force(path, topology, atoms=[0, 1, 1])
    with pytest.raises(ValueError, match="precision"):
        create_force(path, topology, precision="float16")


def test_short_nve_run_of_a_water_trimer_conserves_energy(exported_model):
    """Float64 model, CPU platform, 0.25 fs Verlet, 0.1 ps: total energy stays within 0.5% of the
    kinetic energy's own scale (its std over the run) and shows no NaN."""
    path, _ = exported_model
    topology, positions = water_box(27, 1.0, seed=2)
    keep = list(range(9))  # three neighbouring molecules, no box
    trimer = app.Topology()
    chain = trimer.addChain()
    for molecule in range(3):
        residue = trimer.addResidue("HOH", chain)
        for name, element in (("O", app.element.oxygen), ("H1", app.element.hydrogen), ("H2", app.element.hydrogen)):
            trimer.addAtom(name, element, residue)
    system = _system_with(create_force(path, trimer), trimer)
    integrator = openmm.VerletIntegrator(0.25 * unit.femtoseconds)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(positions[keep] * unit.nanometer)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    totals, kinetics = [], []
    for _ in range(40):
        integrator.step(10)
        state = context.getState(getEnergy=True)
        kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        totals.append(kinetic + state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        kinetics.append(kinetic)
    assert np.all(np.isfinite(totals))
    assert np.std(kinetics) > 0.1  # the molecules really move
    print("NVE total-energy range", np.ptp(totals), "kinetic std", np.std(kinetics))
    assert np.ptp(totals) < 5e-3 * np.std(kinetics) + 1e-4, (np.ptp(totals), np.std(kinetics))


def test_fixed_capacity_neighbor_list_gives_the_same_energy_and_names_an_overflow(exported_model):
    """Inside a CUDA graph an overflowing list makes the energy NaN (no host check there); on the CPU the force
    says so by name."""
    path, _ = exported_model
    topology, positions = water_box(8, 1.0, seed=4)
    dynamic = _openmm_energy_forces(_system_with(create_force(path, topology), topology), positions)
    graphs = create_force(path, topology, cuda_graphs=True)
    assert graphs.getProperties()["useCUDAGraphs"] == "true"
    fixed = _openmm_energy_forces(_system_with(graphs, topology), positions)
    assert fixed[0] == pytest.approx(dynamic[0], rel=1e-12)
    np.testing.assert_allclose(fixed[1], dynamic[1], rtol=1e-10, atol=1e-10)
    with pytest.raises(openmm.OpenMMException, match=r"neighbour list overflowed: \d+ pairs lie within the cutoff "
                                                     r"but max_pairs is 10"):
        _openmm_energy_forces(_system_with(create_force(path, topology, max_pairs=10), topology), positions)


def test_default_capacity_covers_liquid_water_with_headroom():
    from equiforce.openmm._force import default_max_pairs
    # 0.1 atoms/Å³, 5 Å cutoff: about 52 neighbours per atom on average
    assert default_max_pairs(96, 96, 5.0, 960.0) == pytest.approx(96 * 52.4 * 1.5, rel=0.01)
    assert default_max_pairs(5, 5, 5.0, None) == 20
