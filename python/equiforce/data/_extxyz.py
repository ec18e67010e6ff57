"""Appending to extended XYZ files frame by frame, and resuming after a killed writer."""
from typing import Tuple


def complete_frames(path: str) -> Tuple[int, int]:
    """(number of complete frames, byte offset of their end) of an extended XYZ file.

    A frame is complete when its atom-count line, comment line and every atom line end in a newline; reading
    stops at the first incomplete or malformed frame (what a writer killed mid-frame leaves behind).
    """
    n, end = 0, 0
    with open(path, "rb") as handle:
        while True:
            try:
                natoms = int(handle.readline().strip())
            except ValueError:
                break
            lines = [handle.readline() for _ in range(natoms + 1)]
            if not all(line.endswith(b"\n") for line in lines):
                break
            n, end = n + 1, handle.tell()
    return n, end


def cut_incomplete_frame(path: str) -> Tuple[int, bool]:
    """Truncate ``path`` after its last complete frame; returns (complete frames, whether anything was cut)."""
    import os

    n, end = complete_frames(path)
    cut = end < os.path.getsize(path)
    if cut:
        with open(path, "r+b") as handle:
            handle.truncate(end)
    return n, cut
