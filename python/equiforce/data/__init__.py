"""Training data: read labelled frames, build graphs with cached neighbour lists, split, batch, statistics.

Units throughout: positions and cells in Å, energies in eV, forces in eV/Å.

Typical use::

    structures = read_structures("water.extxyz")                 # [Structure]
    dataset = GraphDataset(structures, ["H", "O"], cutoff=5.0)   # neighbour lists computed once here
    train, val, test = split_indices(len(dataset), (0.8, 0.1, 0.1), seed=0)
    for batch in iterate_batches(dataset.subset(train), 4, shuffle=True, generator=g):
        energies = model.batch_energy(batch.positions, batch.species, batch.edge_index,
                                      batch.edge_offsets, batch.batch, batch.num_graphs)
"""
from ._batch import Batch, collate, iterate_batches, num_batches
from ._graph import Graph, GraphDataset, species_indices, structure_to_graph
from ._read import (chemical_symbols, read_atoms, read_structures, read_structures_by_path, split_frame_selection,
                    structure_from_atoms)
from ._split import split_indices
from ._extxyz import complete_frames, cut_incomplete_frame
from ._statistics import average_num_neighbors, composition_matrix, fit_energy_shifts, force_rms
from ._structure import DataError, Structure

__all__ = [
    "Structure",
    "DataError",
    "read_atoms",
    "read_structures",
    "read_structures_by_path",
    "split_frame_selection",
    "structure_from_atoms",
    "chemical_symbols",
    "Graph",
    "GraphDataset",
    "species_indices",
    "structure_to_graph",
    "Batch",
    "collate",
    "iterate_batches",
    "num_batches",
    "split_indices",
    "complete_frames",
    "cut_incomplete_frame",
    "fit_energy_shifts",
    "composition_matrix",
    "force_rms",
    "average_num_neighbors",
]
