"""The files of a labelling run: the extended XYZ output, its ``.label.json`` sidecar, its ``.failures.jsonl``.

Every write that a crash could interrupt is either one ``write`` + ``flush`` + ``fsync`` of a whole record at the
end of a file (a killed run leaves at most one incomplete last record, which :func:`scan_output` cuts off) or a
temporary file moved into place with ``os.replace``.
"""
import json
import os
import re
from typing import Dict, List, Tuple

from .._files import append_record, frame_text, write_atomic  # noqa: F401  (used through this module)

#: Key of ``atoms.info`` in every output frame: the frame's index in the input file.
SOURCE_INDEX_KEY = "label_source_index"

_SOURCE_INDEX = re.compile(rb"(?:^|\s)" + SOURCE_INDEX_KEY.encode() + rb"=(\d+)(?=\s|$)")


def sidecar_path(output: str) -> str:
    """``OUTPUT.label.json``: input hash, settings, tblite version and counts of the run writing ``output``."""
    return f"{output}.label.json"


def failures_path(output: str) -> str:
    """``OUTPUT.failures.jsonl``: one JSON line (``index``, ``error``, ``attempts``) per frame that failed."""
    return f"{output}.failures.jsonl"


def scan_output(path: str) -> List[Tuple[int, int, int]]:
    """(source index, start byte, end byte) of each complete frame of an output file, in file order.

    An incomplete last frame (a run killed mid-write) is cut off the file. A complete frame without
    ``label_source_index`` means the file was not written by ``label_frames``: refused with a ValueError.
    """
    records = []
    with open(path, "rb") as handle:
        while True:
            start = handle.tell()
            first = handle.readline()
            try:
                natoms = int(first.strip())
            except ValueError:
                break
            comment = handle.readline()
            atoms_lines = [handle.readline() for _ in range(natoms)]
            if not (first.endswith(b"\n") and comment.endswith(b"\n") and all(l.endswith(b"\n") for l in atoms_lines)):
                break
            found = _SOURCE_INDEX.search(comment)
            if found is None:
                raise ValueError(f"{path}: frame {len(records)} (byte {start}) has no {SOURCE_INDEX_KEY}; this file "
                                 "was not written by equiforce label (choose another --output)")
            records.append((int(found.group(1)), start, handle.tell()))
    end = records[-1][2] if records else 0
    if end < os.path.getsize(path):
        with open(path, "r+b") as handle:
            handle.truncate(end)
    return records


def reorder_output(path: str, records: List[Tuple[int, int, int]]) -> bool:
    """Rewrite ``path`` with its frames sorted by source index (atomically); False when already in order."""
    order = sorted(records)
    if [r[0] for r in order] == [r[0] for r in records]:
        return False
    with open(path, "rb") as handle:
        raw = handle.read()
    write_atomic(path, b"".join(raw[start:end] for _, start, end in order))
    return True


def read_failures(path: str) -> Dict[int, dict]:
    """Failed frames by source index (a last line cut off by a crash is dropped from the file)."""
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as handle:
        raw = handle.read()
    failures, good = {}, 0
    for line in raw.splitlines(keepends=True):
        try:
            if not line.endswith(b"\n"):
                raise ValueError
            record = json.loads(line)
        except ValueError:
            break
        failures[int(record["index"])] = record
        good += len(line)
    if good < len(raw):
        with open(path, "r+b") as handle:
            handle.truncate(good)
    return failures


def write_failures(path: str, failures: Dict[int, dict]) -> None:
    """Replace the failures file by ``failures`` (atomically; removed when empty)."""
    if not failures:
        if os.path.exists(path):
            os.remove(path)
        return
    write_atomic(path, b"".join(failure_line(failures[k]).encode() for k in sorted(failures)))


def failure_line(record: dict) -> str:
    """One failure as a JSON line."""
    return json.dumps(record, sort_keys=True) + "\n"


def read_sidecar(path: str) -> dict:
    with open(path) as handle:
        return json.load(handle)


def write_sidecar(path: str, content: dict) -> None:
    write_atomic(path, (json.dumps(content, indent=2, sort_keys=True) + "\n").encode())
