"""Frames between OpenMM and ASE, and an extended-XYZ file that grows one whole frame at a time."""
import io
import os
from typing import List, Optional

import ase
import ase.io
import numpy as np
import openmm
from openmm import app, unit

from .._files import append_record, frame_text, write_atomic
from ..units import nm_to_angstrom


def topology_symbols(topology: app.Topology) -> List[str]:
    """Element symbols of the topology's atoms, in order; an atom without an element is an error naming it."""
    symbols = []
    for atom in topology.atoms():
        if atom.element is None:
            raise ValueError(f"atom {atom.index} ({atom.residue.name} {atom.residue.id} {atom.name}) has no element: "
                             f"the reference method and the model need one for every atom")
        symbols.append(atom.element.symbol)
    return symbols


def state_to_atoms(symbols: List[str], state: openmm.State, periodic: bool) -> ase.Atoms:
    """ASE ``Atoms`` (Å) of an OpenMM state's positions and box; no energies or forces (these are not labels)."""
    positions_A = nm_to_angstrom(np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)))
    atoms = ase.Atoms(symbols=symbols, positions=positions_A)
    if periodic:
        box_A = nm_to_angstrom(np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)))
        atoms.set_cell(box_A)
        atoms.set_pbc(True)
    return atoms


def append_frame(path: str, atoms: ase.Atoms) -> None:
    """Append one frame with a single write, flushed to disk, so a crash leaves whole frames only (at worst a
    partial last one, which :func:`keep_frames` cuts off)."""
    with open(path, "ab") as handle:
        append_record(handle, frame_text(atoms))


def read_frames(path: str) -> List[ase.Atoms]:
    """Every frame of ``path`` (empty list if the file does not exist or is empty)."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return []
    return list(ase.io.read(path, index=":"))


def write_frames(path: str, frames: List[ase.Atoms]) -> None:
    """Write ``frames`` to ``path`` atomically (a temporary file renamed over it)."""
    write_atomic(path, "".join(frame_text(atoms) for atoms in frames))


def keep_frames(path: str, count: int) -> None:
    """Cut ``path`` back to its first ``count`` frames (a rerun's frames after its last checkpoint go)."""
    frames, torn = _read_whole_frames(path)
    if len(frames) != count or torn:
        if len(frames) < count:
            raise RuntimeError(f"{path} holds {len(frames)} whole frames but its checkpoint records {count}: "
                               f"the file was changed by hand; move it away to start again")
        write_frames(path, frames[:count])


def _read_whole_frames(path: str) -> "tuple[List[ase.Atoms], bool]":
    """The frames of ``path`` that were written whole, and whether text follows them (a last frame cut short by
    a crash)."""
    if not os.path.exists(path):
        return [], False
    with open(path) as handle:
        lines = handle.read().splitlines(keepends=True)
    frames, start = [], 0
    while start < len(lines):
        try:
            n_atoms = int(lines[start].split()[0])
        except (ValueError, IndexError):
            break
        end = start + 2 + n_atoms
        if end > len(lines):
            break
        frames.append(ase.io.read(io.StringIO("".join(lines[start:end])), format="extxyz"))
        start = end
    return frames, start < len(lines)


def count_whole_frames(path: Optional[str]) -> int:
    """Number of whole frames in ``path`` (0 when it does not exist)."""
    return 0 if path is None else len(_read_whole_frames(path)[0])
