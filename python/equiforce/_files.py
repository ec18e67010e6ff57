"""Files that a crash never leaves half written: whole replacements, and whole records appended at the end.

Every long job of the package (labelling, sampling, the learning loop, training logs, saved Systems) writes
through these, so a session that stops anywhere leaves either the old file, the new one, or the old one plus
whole records.
"""
import io
import json
import os
from typing import Any, Union


def write_atomic(path: str, data: Union[bytes, str]) -> None:
    """Replace ``path`` by ``data`` through a temporary file, flushed to disk, and ``os.replace``."""
    temporary = f"{path}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_json(path: str, payload: Any) -> None:
    """Write ``payload`` as indented JSON to ``path`` (its folder made if needed), atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, json.dumps(payload, indent=1))


def append_record(handle, text: str) -> None:
    """Append ``text`` to the open binary file ``handle`` in one write, then flush and fsync it."""
    handle.write(text.encode())
    handle.flush()
    os.fsync(handle.fileno())


def frame_text(atoms) -> str:
    """One ASE frame as extended XYZ text (with its calculator's energy, forces, dipole if it has one)."""
    from ase.io import write

    buffer = io.StringIO()
    write(buffer, atoms, format="extxyz")
    return buffer.getvalue()
