"""Reference labels for your own frames: energies, forces and dipoles from GFN2-xTB (tblite).

Units: positions and cells in Å, energies in eV, forces in eV/Å, dipoles in e·Å, charges in e.

Typical use (or ``equiforce label frames.extxyz --method gfn2 --output labelled.extxyz --workers 2``)::

    summary = label_frames("frames.extxyz", "labelled.extxyz", workers=2)   # rerun to continue
    print(format_summary(summary))
"""
from ._gfn2 import (GFN2_MAX_ATOMIC_NUMBER, METHODS, LabelError, LabelSettings, check_frame, frame_charge,
                    label_atoms, label_task)
from ._run import format_summary, label_frames
from ._store import SOURCE_INDEX_KEY, failures_path, sidecar_path

__all__ = [
    "label_frames",
    "format_summary",
    "label_atoms",
    "label_task",
    "LabelSettings",
    "LabelError",
    "check_frame",
    "frame_charge",
    "METHODS",
    "GFN2_MAX_ATOMIC_NUMBER",
    "SOURCE_INDEX_KEY",
    "sidecar_path",
    "failures_path",
]
