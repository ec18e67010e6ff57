"""SevenNet-0 imported into equiforce's runtime: its energies and forces are SevenNet's, the file is an
equiforce file like any other (load_model, ASE calculator, OpenMM, openmm-ml), and bad input is named."""
import json
import os

import numpy as np
import pytest
import torch

sevenn = pytest.importorskip("sevenn", reason="sevenn is not installed (make install adds it from requirements.txt)")

from conftest import energy_and_forces, random_o3  # noqa: E402

import equiforce  # noqa: E402
from equiforce.imports import GraphPotential, ImportedModelError, import_sevennet  # noqa: E402
from equiforce.imports._sevennet import build_sevennet  # noqa: E402

REFERENCE = os.path.join(os.path.dirname(__file__), "..", "data", "sevennet0_reference.json")


@pytest.fixture(scope="module")
def sevennet_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("sevennet") / "sevennet-0.pt")
    import_sevennet("7net-0", path, progress=False)
    return path


@pytest.fixture(scope="module")
def sevennet_float64(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("sevennet") / "sevennet-0-float64.pt")
    import_sevennet("7net-0", path, dtype="float64", progress=False)
    return equiforce.load_model(path)[0]


@pytest.fixture(scope="module")
def sevennet_module(sevennet_file):
    module, metadata = equiforce.load_model(sevennet_file)
    return module, metadata


def frame_tensors(frame, metadata, dtype=torch.float32):
    index = {symbol: k for k, symbol in enumerate(metadata["elements"])}
    species = torch.tensor([index[s] for s in frame["symbols"]])
    positions = torch.tensor(frame["positions_angstrom"], dtype=dtype)
    cell = None if frame["cell_angstrom"] is None else torch.tensor(frame["cell_angstrom"], dtype=dtype)
    return positions, species, cell


def reference_frames():
    with open(REFERENCE) as handle:
        return json.load(handle)["frames"]


@pytest.mark.parametrize("frame", reference_frames(), ids=lambda f: f["name"])
def test_energy_and_forces_equal_sevennets_own_calculator(sevennet_module, frame):
    module, metadata = sevennet_module
    positions, species, cell = frame_tensors(frame, metadata)
    energy, forces = energy_and_forces(module, positions, species, cell)
    n = len(species)
    assert abs(float(energy) - frame["energy_ev"]) / n < 2e-5  # eV/atom (float32 rounding)
    reference = np.array(frame["forces_ev_per_angstrom"])
    assert np.abs(forces.numpy() - reference).mean() < 1e-4  # eV/Å
    assert np.abs(reference).max() > 0.1  # the frame has forces worth comparing


def test_metadata_names_the_source_and_its_licence(sevennet_module):
    _, metadata = sevennet_module
    assert metadata["architecture"] == "sevennet"
    assert metadata["cutoff"] == 5.0 and len(metadata["elements"]) == 89
    assert metadata["atomic_numbers"] == sorted(metadata["atomic_numbers"])
    source = metadata["source"]
    assert len(source["checkpoint_sha256"]) == 64 and source["imported_with_sevenn"] == sevenn.__version__
    assert "MIT" in source["licence"]
    assert source["round_trip_check"]["energy_difference_ev_per_atom"] < 1e-6


def test_rotation_translation_permutation_invariance(sevennet_module, sevennet_float64):
    _, metadata = sevennet_module
    frame = reference_frames()[1]  # open molecule: any rotation is a symmetry
    positions, species, _ = frame_tensors(frame, metadata, torch.float64)
    module64 = sevennet_float64
    energy, forces = energy_and_forces(module64, positions, species)
    generator = torch.Generator().manual_seed(11)
    for _ in range(2):
        rotation = random_o3(generator, improper=False)
        order = torch.randperm(len(species), generator=generator)
        moved = (positions @ rotation.T + torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64))[order]
        moved_energy, moved_forces = energy_and_forces(module64, moved, species[order])
        torch.testing.assert_close(moved_energy, energy, rtol=1e-11, atol=0.0)
        torch.testing.assert_close(moved_forces, (forces @ rotation.T)[order], rtol=1e-7, atol=1e-8)


def test_mirror_image_energy_is_sevennets_own_since_sevennet_0_has_no_parity(sevennet_module):
    """SevenNet-0 was trained with SO(3) features only (``is_parity: False``): a mirror image is not a symmetry
    of it, and the import must keep that, not hide it. The mirrored ethanol's energy differs from the original's
    and equals what SevenNet's own calculator gives for it."""
    from ase import Atoms
    from sevenn.calculator import SevenNetCalculator

    module, metadata = sevennet_module
    assert metadata["config"]["is_parity"] is False
    frame = reference_frames()[1]
    positions, species, _ = frame_tensors(frame, metadata)
    mirrored = positions * torch.tensor([-1.0, 1.0, 1.0])
    energy_mirrored = float(module(mirrored, species, None))
    assert abs(energy_mirrored - frame["energy_ev"]) > 1e-5  # eV: not invariant (1e-4 eV here)
    atoms = Atoms(frame["symbols"], positions=mirrored.numpy())
    atoms.calc = SevenNetCalculator("7net-0", device="cpu")
    assert energy_mirrored == pytest.approx(atoms.get_potential_energy(), abs=2e-5 * len(atoms))


def test_periodic_cell_rotated_with_the_atoms_and_atoms_shifted_by_lattice_vectors(sevennet_module, sevennet_float64):
    _, metadata = sevennet_module
    positions, species, cell = frame_tensors(reference_frames()[0], metadata, torch.float64)
    module64 = sevennet_float64
    energy, forces = energy_and_forces(module64, positions, species, cell)
    rotation = random_o3(torch.Generator().manual_seed(5), improper=False)
    turned_energy, turned_forces = energy_and_forces(module64, positions @ rotation.T, species, cell @ rotation.T)
    torch.testing.assert_close(turned_energy, energy, rtol=1e-11, atol=0.0)
    torch.testing.assert_close(turned_forces, forces @ rotation.T, rtol=1e-7, atol=1e-8)
    lattice_shifts = torch.tensor([[1, 0, -2]] * 5 + [[0, 3, 1]] * 5, dtype=torch.float64) @ cell
    shifted_energy, shifted_forces = energy_and_forces(module64, positions + lattice_shifts, species, cell)
    torch.testing.assert_close(shifted_energy, energy, rtol=1e-11, atol=0.0)
    torch.testing.assert_close(shifted_forces, forces, rtol=1e-7, atol=1e-8)


def test_file_equals_the_eager_network_it_was_made_from(sevennet_module):
    module, metadata = sevennet_module
    built = build_sevennet("7net-0")
    eager = GraphPotential(built["network"], built["cutoff"], built["atomic_numbers"], built["type_of_species"]).eval()
    positions, species, cell = frame_tensors(reference_frames()[0], metadata)
    energy_file, forces_file = energy_and_forces(module, positions, species, cell)
    energy_eager, forces_eager = energy_and_forces(eager, positions, species, cell)
    torch.testing.assert_close(energy_file, energy_eager, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(forces_file, forces_eager, rtol=1e-4, atol=1e-5)


def test_fused_convolution_computes_e3nns_tensor_products(sevennet_module, sevennet_float64):
    """The fused native op (the default) against SevenNet's own e3nn convolution code, float64."""
    _, metadata = sevennet_module
    built = build_sevennet("7net-0", dtype=torch.float64, fused_convolution=False)
    e3nn_code = GraphPotential(built["network"], built["cutoff"], built["atomic_numbers"], built["type_of_species"])
    positions, species, cell = frame_tensors(reference_frames()[0], metadata, torch.float64)
    energy_fused, forces_fused = energy_and_forces(sevennet_float64, positions, species, cell)
    energy_e3nn, forces_e3nn = energy_and_forces(e3nn_code.eval(), positions, species, cell)
    torch.testing.assert_close(energy_fused, energy_e3nn, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(forces_fused, forces_e3nn, rtol=1e-9, atol=1e-11)


def test_fixed_capacity_neighbour_list_gives_the_same_energy(sevennet_module):
    module, metadata = sevennet_module
    positions, species, cell = frame_tensors(reference_frames()[0], metadata)
    dynamic = module(positions, species, cell)
    padded = module(positions, species, cell, 4000)  # padding edges sit at the cutoff, where SevenNet gives 0
    torch.testing.assert_close(padded, dynamic, rtol=1e-6, atol=1e-6)
    assert torch.isnan(module(positions, species, cell, 10))  # an overflowing list is NaN, not a truncated sum


def test_ase_calculator_runs_the_imported_file(sevennet_file):
    from ase.build import bulk

    from equiforce.calculator import EquiforceCalculator

    atoms = bulk("Si", "diamond", a=5.43)  # 2 atoms, a cell far narrower than twice the cutoff
    atoms.calc = EquiforceCalculator(sevennet_file)
    energy_primitive = atoms.get_potential_energy() / len(atoms)
    supercell = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
    supercell.calc = EquiforceCalculator(sevennet_file)
    assert abs(supercell.get_potential_energy() / len(supercell) - energy_primitive) < 1e-5  # eV/atom
    assert np.abs(supercell.get_forces()).max() < 1e-4  # the perfect crystal is at rest


def test_openmm_energy_and_forces_equal_the_models_in_openmm_units(sevennet_file, sevennet_module):
    import openmm
    from openmm import unit
    from openmmml import MLPotential

    from equiforce.systems import water_box
    from equiforce.units import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV

    module, metadata = sevennet_module
    topology, positions_nm = water_box(8, seed=3)
    system = MLPotential("equiforce", modelPath=sevennet_file).createSystem(topology)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions_nm * unit.nanometer)
    state = context.getState(getEnergy=True, getForces=True)
    box = np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer))
    species = torch.tensor([metadata["elements"].index(a.element.symbol) for a in topology.atoms()])
    energy, forces = energy_and_forces(module, torch.tensor(positions_nm * ANGSTROM_PER_NM, dtype=torch.float32),
                                       species, torch.tensor(box * ANGSTROM_PER_NM, dtype=torch.float32))
    openmm_energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert openmm_energy == pytest.approx(float(energy) * KJ_PER_MOL_PER_EV, rel=1e-5)
    openmm_forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    np.testing.assert_allclose(openmm_forces, forces.numpy() * KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM, rtol=1e-4,
                               atol=1e-2)


def test_mixed_system_puts_the_ml_atoms_under_sevennet(sevennet_file, sevennet_module):
    import openmm
    from openmm import unit
    from openmmml import MLPotential

    from equiforce.systems import tip3pfb_system, water_box
    from equiforce.units import ANGSTROM_PER_NM, KJ_PER_MOL_PER_EV

    module, metadata = sevennet_module
    topology, positions_nm = water_box(8, seed=4)
    mixed = MLPotential("equiforce", modelPath=sevennet_file).createMixedSystem(
        topology, tip3pfb_system(topology), [0, 1, 2], forceGroup=7)
    context = openmm.Context(mixed, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions_nm * unit.nanometer)
    ml_energy = context.getState(getEnergy=True, groups={7}).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    box = np.array(topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)) * ANGSTROM_PER_NM
    species = torch.tensor([metadata["elements"].index(s) for s in ("O", "H", "H")])
    energy = module(torch.tensor(positions_nm[:3] * ANGSTROM_PER_NM, dtype=torch.float32), species,
                    torch.tensor(box, dtype=torch.float32))  # the first molecule alone, in the periodic box
    assert ml_energy == pytest.approx(float(energy) * KJ_PER_MOL_PER_EV, rel=1e-5)


def test_unknown_element_is_named_with_its_atom(sevennet_file):
    import openmm.app as app

    from equiforce.openmm import create_force

    topology = app.Topology()
    residue = topology.addResidue("MOL", topology.addChain())
    topology.addAtom("C1", app.element.carbon, residue)
    topology.addAtom("RN", app.element.get_by_symbol("Rn"), residue)  # radon: not among SevenNet-0's elements
    with pytest.raises(ValueError, match=r"atom 1 \(RN in residue MOL 1\) is element Rn"):
        create_force(sevennet_file, topology)


def test_box_too_small_for_the_cutoff_names_the_box_vector(sevennet_module):
    module, metadata = sevennet_module
    positions = torch.zeros((2, 3))
    positions[1, 0] = 0.01
    species = torch.tensor([metadata["elements"].index("Si")] * 2)
    cell = torch.diag(torch.tensor([2.0, 2.0, 0.05]))  # Å: 100 heights of c within the 5 Å cutoff
    with pytest.raises(RuntimeError, match="box too small for the cutoff.*vector c"):
        module(positions, species, cell)


def test_unsupported_sevenn_version_is_refused_by_name(monkeypatch, tmp_path):
    monkeypatch.setattr(sevenn, "__version__", "0.9.3")
    with pytest.raises(ImportedModelError, match="sevenn 0.9.3 is installed; this importer supports sevenn 0.13"):
        import_sevennet("7net-0", str(tmp_path / "never.pt"), progress=False)
    assert not (tmp_path / "never.pt").exists()


def test_checkpoint_from_a_newer_sevenn_is_refused_naming_both_versions():
    from equiforce.imports._sevennet import check_checkpoint_version

    check_checkpoint_version("0.9.1", "0.13.0", "old.pth")  # SevenNet-0's own: upgraded by sevenn's reader
    with pytest.raises(ImportedModelError, match=r"new.pth was written by sevenn 0.14.2, newer than the installed "
                                                 r"sevenn 0.13.0"):
        check_checkpoint_version("0.14.2", "0.13.0", "new.pth")


def test_a_file_that_is_not_a_checkpoint_is_refused_with_its_path(tmp_path):
    bogus = tmp_path / "not-a-checkpoint.pth"
    bogus.write_bytes(b"this is not a torch file")
    with pytest.raises(ImportedModelError, match="not-a-checkpoint.pth is not a SevenNet checkpoint"):
        import_sevennet(str(bogus), str(tmp_path / "never.pt"), progress=False)
