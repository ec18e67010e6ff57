"""One labelled atomic structure, as read from a file, before it is turned into a graph."""
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import Tensor


class DataError(ValueError):
    """A data set problem (unreadable frame, unknown element, missing labels); the message names the culprit."""


@dataclass
class Structure:
    """A labelled structure in model units.

    Attributes
    ----------
    symbols : list of str, [N]
        Chemical symbol of each atom.
    positions : Tensor [N, 3], float64
        Cartesian coordinates in Å.
    cell : Tensor [3, 3], float64, or None
        Lattice vectors as rows in Å for a periodic frame (periodic in all three directions); ``None`` for an
        open (non-periodic) frame.
    energy : float or None
        Total energy in eV.
    forces : Tensor [N, 3], float64, or None
        Forces in eV/Å.
    source : str
        Where the frame came from, ``"path:frame_index"``, for error messages.
    dipole : Tensor [3], float64, or None
        Molecular dipole in e·Å (open frames only: a periodic frame's dipole depends on the choice of images).
    polarizability : Tensor [3, 3], float64, or None
        Polarizability in Å³ (9 values are read as a 3 × 3 matrix, rows first).
    """

    symbols: List[str]
    positions: Tensor
    cell: Optional[Tensor]
    energy: Optional[float]
    forces: Optional[Tensor]
    source: str = "<memory>"
    dipole: Optional[Tensor] = None
    polarizability: Optional[Tensor] = None

    def __post_init__(self) -> None:
        self.symbols = list(self.symbols)
        self.positions = torch.as_tensor(self.positions, dtype=torch.float64)
        n = len(self.symbols)
        if self.positions.shape != (n, 3):
            raise DataError(f"{self.source}: positions have shape {tuple(self.positions.shape)}, expected ({n}, 3)")
        if self.cell is not None:
            self.cell = torch.as_tensor(self.cell, dtype=torch.float64)
            if self.cell.shape != (3, 3):
                raise DataError(f"{self.source}: cell has shape {tuple(self.cell.shape)}, expected (3, 3)")
        if self.forces is not None:
            self.forces = torch.as_tensor(self.forces, dtype=torch.float64)
            if self.forces.shape != (n, 3):
                raise DataError(f"{self.source}: forces have shape {tuple(self.forces.shape)}, expected ({n}, 3)")
        if self.energy is not None:
            self.energy = float(self.energy)
        if self.dipole is not None:
            self.dipole = torch.as_tensor(self.dipole, dtype=torch.float64).reshape(-1)
            if self.dipole.shape != (3,):
                raise DataError(f"{self.source}: dipole has {self.dipole.numel()} values, expected 3 (e·Å)")
            if self.cell is not None:
                raise DataError(
                    f"{self.source}: a periodic frame has a dipole label; dipoles are learned on open frames only"
                )
        if self.polarizability is not None:
            values = torch.as_tensor(self.polarizability, dtype=torch.float64)
            if values.numel() != 9:
                raise DataError(f"{self.source}: polarizability has {values.numel()} values, expected 9 (3 × 3, Å³)")
            self.polarizability = values.reshape(3, 3)

    @property
    def num_atoms(self) -> int:
        """Number of atoms N."""
        return len(self.symbols)

    @property
    def periodic(self) -> bool:
        """True for a periodic frame (a cell is set)."""
        return self.cell is not None
