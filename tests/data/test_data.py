"""Training data: reading frames, graphs with cached neighbour lists, the split, statistics and batching."""
import ase
import ase.io
import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator

from equiforce.data import (
    DataError,
    GraphDataset,
    average_num_neighbors,
    collate,
    fit_energy_shifts,
    force_rms,
    iterate_batches,
    read_atoms,
    read_structures,
    read_structures_by_path,
    split_indices,
)
from equiforce.neighbors import edge_vectors, neighbor_list
from conftest import ATOM_ENERGIES, energy_and_forces, make_model, random_frames, write_frames

# ------------------------------------------------------------------------------------------------- reading
def test_extxyz_round_trip_keeps_periodic_and_open_frames_with_their_labels(tmp_path):
    frames = random_frames(6, seed=1)
    path = write_frames(tmp_path / "mixed.extxyz", frames)
    structures = read_structures(path)
    assert len(structures) == 6
    for k, (atoms, structure) in enumerate(zip(frames, structures)):
        assert structure.source == f"{path}:{k}"
        assert structure.symbols == atoms.get_chemical_symbols()
        assert structure.periodic == bool(atoms.pbc.all())
        if structure.periodic:
            np.testing.assert_allclose(structure.cell.numpy(), atoms.cell.array, atol=1e-12)
        else:
            assert structure.cell is None
        np.testing.assert_allclose(structure.positions.numpy(), atoms.positions, atol=1e-7)
        assert structure.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-7)
        np.testing.assert_allclose(structure.forces.numpy(), atoms.get_forces(), atol=1e-7)


def test_several_files_are_concatenated_and_max_frames_keeps_a_prefix(tmp_path):
    first = write_frames(tmp_path / "a.extxyz", random_frames(3, seed=2))
    second = write_frames(tmp_path / "b.extxyz", random_frames(2, seed=3))
    sources = [s.source for s in read_structures([first, second])]
    assert sources == [f"{first}:0", f"{first}:1", f"{first}:2", f"{second}:0", f"{second}:1"]
    assert [s.source for s in read_structures([first, second], max_frames=4)] == sources[:4]


def test_a_frame_selection_after_at_takes_those_frames_and_keeps_their_file_index(tmp_path):
    frames = random_frames(7, seed=4)
    path = write_frames(tmp_path / "all.extxyz", frames)
    picked = read_structures([f"{path}@2:6:2", f"{path}@5:"])
    assert [s.source for s in picked] == [f"{path}:2", f"{path}:4", f"{path}:5", f"{path}:6"]
    np.testing.assert_allclose(picked[1].positions.numpy(), frames[4].positions, atol=1e-7)
    assert [s.source for s in read_structures(f"{path}@:3")] == [f"{path}:{k}" for k in range(3)]
    assert [s.source for s in read_structures([f"{path}@1:", path], max_frames=3)] == [
        f"{path}:1", f"{path}:2", f"{path}:3"]
    groups = read_structures_by_path([f"{path}@2:6:2", f"{path}@5:", path], max_frames=5)  # per entry, cut at 5
    assert [[s.source for s in group] for group in groups] == [
        [f"{path}:2", f"{path}:4"], [f"{path}:5", f"{path}:6"], [f"{path}:0"]]
    with pytest.raises(DataError, match="non-negative"):
        read_structures(f"{path}@-2:")
    with pytest.raises(DataError, match="no frames"):
        read_structures(f"{path}@9:")
    with pytest.raises(DataError, match="step"):
        read_structures(f"{path}@0:3:0")


@pytest.mark.parametrize("suffix, module", [(".xz", "lzma"), (".gz", "gzip"), (".bz2", "bz2")])
def test_compressed_extxyz_reads_like_the_plain_file(tmp_path, suffix, module):
    import importlib

    plain = write_frames(tmp_path / "w.extxyz", random_frames(4, seed=5))
    packed = str(tmp_path / "w.extxyz") + suffix
    with open(plain, "rb") as source, importlib.import_module(module).open(packed, "wb") as target:
        target.write(source.read())
    tail = read_atoms(packed, index="2:")
    assert len(tail) == 2
    for got, expected in zip(tail, ase.io.read(plain, index="2:")):
        np.testing.assert_array_equal(got.get_positions(), expected.get_positions())
        np.testing.assert_array_equal(got.get_forces(), expected.get_forces())
        assert got.get_potential_energy() == expected.get_potential_energy()
    from_packed = read_structures(packed)
    from_plain = read_structures(plain)
    assert [s.energy for s in from_packed] == [s.energy for s in from_plain]
    assert from_packed[3].source == f"{packed}:3"


def test_a_frame_without_energy_or_forces_is_named_in_the_error(tmp_path):
    frames = random_frames(3, seed=4)
    frames[2].calc = SinglePointCalculator(frames[2], forces=frames[2].get_forces())
    path = write_frames(tmp_path / "no-energy.extxyz", frames)
    with pytest.raises(DataError, match=rf"{path}:2.*no energy"):
        read_structures(path)
    frames = random_frames(3, seed=4)
    frames[1].calc = SinglePointCalculator(frames[1], energy=frames[1].get_potential_energy())
    path = write_frames(tmp_path / "no-forces.extxyz", frames)
    with pytest.raises(DataError, match=rf"{path}:1.*no forces"):
        read_structures(path)
    assert read_structures(path, require_forces=False)[1].forces is None


def test_unknown_element_and_partial_periodicity_are_refused_naming_the_frame(tmp_path):
    frames = random_frames(3, seed=5)
    frames[1][0].symbol = "C"
    path = write_frames(tmp_path / "carbon.extxyz", frames)
    with pytest.raises(DataError, match=rf"{path}:1.*\['C'\].*\['H', 'O'\]"):
        GraphDataset(read_structures(path), ["H", "O"], cutoff=3.0)
    slab = random_frames(1, seed=6)[0]
    slab.pbc = [True, True, False]
    path = write_frames(tmp_path / "slab.extxyz", [slab])
    with pytest.raises(DataError, match=rf"{path}:0.*pbc"):
        read_structures(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_structures(str(tmp_path / "nothing.extxyz"))


# ------------------------------------------------------------------------------------------------- graphs
def test_graphs_carry_the_neighbour_list_of_equiforce_neighbors(tmp_path):
    structures = read_structures(write_frames(tmp_path / "d.extxyz", random_frames(4, seed=7)))
    dataset = GraphDataset(structures, ["H", "O"], cutoff=2.5)
    for structure, graph in zip(structures, dataset.graphs):
        edge_index, shifts = neighbor_list(structure.positions, 2.5, structure.cell)
        assert torch.equal(graph.edge_index, edge_index)
        expected = edge_vectors(structure.positions, edge_index, shifts, structure.cell)  # [E, 3] Å
        vectors = graph.positions[graph.edge_index[1]] - graph.positions[graph.edge_index[0]] + graph.edge_offsets
        torch.testing.assert_close(vectors, expected, rtol=0, atol=1e-12)
        assert graph.species.tolist() == [["H", "O"].index(s) for s in structure.symbols]


# ------------------------------------------------------------------------------------------------- split
def test_split_is_reproducible_disjoint_and_covers_every_frame():
    train, val, test = split_indices(100, (0.8, 0.1, 0.1), seed=3)
    assert (len(train), len(val), len(test)) == (80, 10, 10)
    assert sorted(train + val + test) == list(range(100))
    assert split_indices(100, (0.8, 0.1, 0.1), seed=3) == (train, val, test)
    assert split_indices(100, (0.8, 0.1, 0.1), seed=4) != (train, val, test)
    train, val, test = split_indices(100, (0.5, 0.1, 0.0), seed=0)
    assert (len(train), len(val), len(test)) == (50, 10, 0) and not set(train) & set(val)


def test_bad_split_fractions_are_refused():
    with pytest.raises(ValueError, match="sum to at most 1"):
        split_indices(10, (0.8, 0.2, 0.2))
    with pytest.raises(ValueError, match="no training frame"):
        split_indices(2, (0.0, 0.5, 0.5))


# ------------------------------------------------------------------------------------------------- statistics
def test_least_squares_shifts_recover_known_per_element_energies():
    rng = np.random.default_rng(8)
    frames = []
    for _ in range(12):
        n_h, n_o = int(rng.integers(0, 6)), int(rng.integers(1, 6))
        symbols = ["H"] * n_h + ["O"] * n_o
        atoms = ase.Atoms(symbols, positions=2.0 * np.arange(3 * len(symbols)).reshape(-1, 3))
        energy = n_h * ATOM_ENERGIES["H"] + n_o * ATOM_ENERGIES["O"] + rng.normal(0.0, 1e-3)
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((len(symbols), 3)))
        frames.append(atoms)
    from equiforce.data import structure_from_atoms

    dataset = GraphDataset([structure_from_atoms(a, f"frame{k}") for k, a in enumerate(frames)], ["H", "O"], 1.0)
    shift_h, shift_o = fit_energy_shifts(dataset.graphs, 2)
    assert shift_h == pytest.approx(ATOM_ENERGIES["H"], abs=2e-3)
    assert shift_o == pytest.approx(ATOM_ENERGIES["O"], abs=2e-3)


def test_force_scale_is_the_rms_force_component_and_neighbours_are_edges_per_atom(tmp_path):
    structures = read_structures(write_frames(tmp_path / "s.extxyz", random_frames(5, seed=9)))
    dataset = GraphDataset(structures, ["H", "O"], cutoff=3.0)
    forces = torch.cat([s.forces for s in structures])  # [N, 3] eV/Å
    assert force_rms(dataset.graphs) == pytest.approx(float(forces.pow(2).mean().sqrt()), rel=1e-12)
    edges = sum(neighbor_list(s.positions, 3.0, s.cell)[0].shape[1] for s in structures)
    assert average_num_neighbors(dataset.graphs) == pytest.approx(edges / len(forces), rel=1e-12)


# ------------------------------------------------------------------------------------------------- batching
def test_batch_energy_of_a_batch_equals_per_frame_energies_and_forces(tmp_path):
    frames = random_frames(4, seed=10)
    triclinic = ase.Atoms("OHHO", positions=[[0.1, 0.2, 0.3], [1.0, 0.1, 0.2], [0.3, 1.1, 0.9], [2.0, 2.1, 1.5]],
                          cell=[[3.0, 0.0, 0.0], [0.8, 2.9, 0.0], [0.5, 0.4, 3.1]], pbc=True)  # widths < 2·cutoff
    triclinic.calc = SinglePointCalculator(triclinic, energy=0.0, forces=np.zeros((4, 3)))
    structures = read_structures(write_frames(tmp_path / "b.extxyz", frames + [triclinic]))
    model = make_model(torch.float64, seed=1, cutoff=2.5, lmax=1, num_features=4, num_layers=2)
    dataset = GraphDataset(structures, ["H", "O"], cutoff=model.config.cutoff)
    batch = collate(dataset.graphs)
    assert batch.num_graphs == 5
    assert batch.batch.tolist() == sum(([k] * s.num_atoms for k, s in enumerate(structures)), [])
    positions = batch.positions.clone().requires_grad_(True)
    energies = model.batch_energy(positions, batch.species, batch.edge_index, batch.edge_offsets, batch.batch, 5)
    (gradient,) = torch.autograd.grad(energies.sum(), positions)
    start = 0
    for k, structure in enumerate(structures):
        species = dataset.graphs[k].species
        energy, forces = energy_and_forces(model, structure.positions, species, structure.cell)
        torch.testing.assert_close(energies[k].detach(), energy, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(-gradient[start : start + structure.num_atoms], forces, rtol=1e-10, atol=1e-10)
        start += structure.num_atoms


def test_shuffled_batches_are_reproducible_for_a_generator_seed_and_cover_every_frame(tmp_path):
    structures = read_structures(write_frames(tmp_path / "s.extxyz", random_frames(7, seed=11)))
    graphs = GraphDataset(structures, ["H", "O"], cutoff=3.0).graphs

    def energies(seed):
        batches = iterate_batches(graphs, 3, shuffle=True, generator=torch.Generator().manual_seed(seed))
        return [b.energy.tolist() for b in batches]

    first = energies(0)
    assert [len(b) for b in first] == [3, 3, 1]
    assert first == energies(0) and first != energies(1)
    assert sorted(sum(first, [])) == sorted(float(g.energy) for g in graphs)


def test_incomplete_last_frame_of_an_appended_file_is_found_and_cut(tmp_path):
    from equiforce.data import complete_frames, cut_incomplete_frame

    path = write_frames(tmp_path / "appended.extxyz", random_frames(3, seed=2))
    whole = open(path, "rb").read()
    n, end = complete_frames(path)
    assert (n, end) == (3, len(whole))
    with open(path, "ab") as handle:
        handle.write(whole[: len(whole) // 5])  # a writer killed inside the next frame
    assert cut_incomplete_frame(path) == (3, True)
    assert open(path, "rb").read() == whole and cut_incomplete_frame(path) == (3, False)
    assert len(read_structures(path)) == 3
