"""Read labelled structures from extended XYZ or any other format ASE reads."""
import os
import re
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np

from ._structure import DataError, Structure


def _label(atoms, key: str, per_atom: bool):
    """Value of ``key`` from the attached calculator's results, else ``atoms.arrays`` / ``atoms.info``."""
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", None) or {}
    if key in results:
        return results[key]
    store = atoms.arrays if per_atom else atoms.info
    return store.get(key)


def structure_from_atoms(
    atoms,
    source: str,
    energy_key: str = "energy",
    forces_key: str = "forces",
    dipole_key: Optional[str] = None,
    polarizability_key: Optional[str] = None,
) -> Structure:
    """Convert one ``ase.Atoms`` to a :class:`Structure` (Å, eV, eV/Å; dipole e·Å, polarizability Å³).

    A frame must be periodic in all three directions or in none; partial periodicity is refused. The dipole
    and polarizability are read only when their key is given (calculator results, then ``atoms.info``); a frame
    without them gets ``None``.
    """
    pbc = np.asarray(atoms.get_pbc(), dtype=bool)  # [3]
    if pbc.all():
        cell = np.asarray(atoms.get_cell().array, dtype=np.float64)  # [3, 3] Å
        if abs(np.linalg.det(cell)) < 1e-12:
            raise DataError(f"{source}: periodic frame with a degenerate cell {cell.tolist()}")
    elif not pbc.any():
        cell = None
    else:
        raise DataError(f"{source}: pbc={pbc.tolist()}; only fully periodic or fully open frames are supported")
    energy = _label(atoms, energy_key, per_atom=False)
    forces = _label(atoms, forces_key, per_atom=True)
    return Structure(
        symbols=atoms.get_chemical_symbols(),
        positions=np.asarray(atoms.get_positions(), dtype=np.float64),
        cell=cell,
        energy=None if energy is None else float(np.asarray(energy).reshape(())),
        forces=None if forces is None else np.asarray(forces, dtype=np.float64),
        source=source,
        dipole=_optional_array(atoms, dipole_key),
        polarizability=_optional_array(atoms, polarizability_key),
    )


def _optional_array(atoms, key: Optional[str]):
    """float64 array of the frame-level label ``key``, or None (no key asked for, or the frame lacks it)."""
    if key is None:
        return None
    value = _label(atoms, key, per_atom=False)
    return None if value is None else np.asarray(value, dtype=np.float64)


#: ``path@start:stop[:step]`` (non-negative integers, each may be empty), as on ASE's command line.
_SELECTION = re.compile(r"^(?P<path>.+)@(?P<start>\d*):(?P<stop>\d*)(?::(?P<step>\d*))?$")


def split_frame_selection(path: str) -> "tuple[str, slice]":
    """``"data.extxyz@0:1387"`` -> ``("data.extxyz", slice(0, 1387, None))``; a plain path selects every frame.

    A path that exists as written is taken literally, even if it contains ``@``. Negative indices are refused
    (frames are named by their index in the file, so the selection must not depend on the file's length).
    """
    if os.path.exists(path):
        return path, slice(None)
    match = _SELECTION.match(path)
    if match is None:
        if re.search(r"@-\d", path):
            raise DataError(f"{path}: frame selections take non-negative indices (path@start:stop[:step])")
        return path, slice(None)
    start, stop, step = (int(match[k]) if match[k] else None for k in ("start", "stop", "step"))
    if step == 0:
        raise DataError(f"{path}: the step of a frame selection must be positive")
    return match["path"], slice(start, stop, step)


_DECOMPRESSORS = {".xz": "lzma", ".gz": "gzip", ".bz2": "bz2"}


def read_atoms(path: str, index: str = ":"):
    """``ase.io.read(path, index)``, but a compressed (.xz, .gz, .bz2) XYZ/extxyz file is decompressed once.

    ASE opens compressed files as streams it cannot seek, and for an index other than the first frame it
    decompresses the file again and again: reading the last 12 frames of the 1600-frame water set took 7 minutes
    that way, and takes 2 s from memory. Returns a list of ``ase.Atoms`` for a slice index, one for an integer.
    """
    import importlib
    import io

    import ase.io

    stem, suffix = os.path.splitext(path)
    if suffix in _DECOMPRESSORS and os.path.splitext(stem)[1] in (".xyz", ".extxyz"):
        with importlib.import_module(_DECOMPRESSORS[suffix]).open(path, "rt") as handle:
            text = handle.read()
        return ase.io.read(io.StringIO(text), index=index, format="extxyz")
    return ase.io.read(path, index=index)


def read_structures(
    paths: Union[str, Sequence[str]],
    max_frames: Optional[int] = None,
    require_energy: bool = True,
    require_forces: bool = True,
    energy_key: str = "energy",
    forces_key: str = "forces",
    dipole_key: Optional[str] = None,
    polarizability_key: Optional[str] = None,
) -> List[Structure]:
    """Read every frame of one or more files (extxyz or anything ``ase.io.read`` understands).

    Parameters
    ----------
    paths
        A path or a list of paths; frames are concatenated in the order given. A path may end in
        ``@start:stop[:step]`` to take only those frames of the file (``"water.extxyz@:1387"``: the first 1387);
        frames keep their index in the file in ``source``.
    max_frames
        Keep only the first ``max_frames`` frames of the concatenation (``None``: all).
    require_energy, require_forces
        Raise :class:`DataError` naming the file and frame when a frame lacks an energy (eV) / forces (eV/Å).
    energy_key, forces_key
        Names of the labels: looked up in the calculator results, then in ``atoms.info`` / ``atoms.arrays``.
    dipole_key, polarizability_key
        Names of optional frame labels (dipole, 3 values, e·Å; polarizability, 3 × 3 or 9 values, Å³), read
        only when given; frames without them are kept (with ``None``).

    Returns
    -------
    list of :class:`Structure`, each with ``source = "path:index"``.
    """
    groups = read_structures_by_path(paths, max_frames, require_energy, require_forces, energy_key, forces_key,
                                     dipole_key, polarizability_key)
    return [structure for group in groups for structure in group]


def read_structures_by_path(
    paths: Union[str, Sequence[str]],
    max_frames: Optional[int] = None,
    require_energy: bool = True,
    require_forces: bool = True,
    energy_key: str = "energy",
    forces_key: str = "forces",
    dipole_key: Optional[str] = None,
    polarizability_key: Optional[str] = None,
) -> List[List[Structure]]:
    """:func:`read_structures`, with the frames of each entry of ``paths`` in a list of their own (entries past
    ``max_frames`` are left out): for settings given per data entry, such as ``TrainConfig.train_repeats``."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    groups: List[List[Structure]] = []
    total = 0
    for given in paths:
        path, selection = split_frame_selection(os.fspath(given))
        if not os.path.exists(path):
            raise DataError(f"data file {path} does not exist")
        if max_frames is not None and total >= max_frames:
            break
        first, step = selection.start or 0, selection.step or 1
        remaining = None if max_frames is None else max_frames - total
        if selection == slice(None):
            index = ":" if remaining is None else f":{remaining}"
        else:
            index = f"{first}:{'' if selection.stop is None else selection.stop}:{step}"
        try:
            frames = read_atoms(path, index=index)
        except Exception as error:  # ASE raises many kinds; name the file
            raise DataError(f"cannot read {given}: {type(error).__name__}: {error}") from error
        if remaining is not None:
            frames = frames[:remaining]
        if not frames and selection != slice(None):
            raise DataError(f"{given}: the selection holds no frames")
        group: List[Structure] = []
        for k, atoms in enumerate(frames):
            structure = structure_from_atoms(
                atoms, f"{path}:{first + k * step}", energy_key, forces_key, dipole_key, polarizability_key
            )
            if require_energy and structure.energy is None:
                raise DataError(f"{structure.source}: frame has no energy (key {energy_key!r})")
            if require_forces and structure.forces is None:
                raise DataError(f"{structure.source}: frame has no forces (key {forces_key!r})")
            group.append(structure)
        groups.append(group)
        total += len(group)
    if total == 0:
        raise DataError(f"no frames in {list(paths)}")
    return groups


def chemical_symbols(structures: Iterable[Structure]) -> List[str]:
    """Distinct chemical symbols in ``structures``, ordered by atomic number."""
    from ase.data import atomic_numbers

    present = set()
    for structure in structures:
        present.update(structure.symbols)
    return sorted(present, key=lambda symbol: atomic_numbers[symbol])
