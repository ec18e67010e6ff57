"""ASE calculator for exported equiforce models (Å, eV, eV/Å — ASE's own units)."""
from typing import List, Optional, Tuple

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from .export import load_model, model_dtype
from .export._metadata import DTYPES


class EquiforceCalculator(Calculator):
    """Energy and forces of an exported model for ASE ``Atoms`` (periodic or not).

    Parameters
    ----------
    model_file : a file written by :func:`equiforce.export_model`.
    device : torch device to run on ("cpu", "cuda").
    precision : "float32" or "float64" to run in that precision; None keeps the file's.
    """

    implemented_properties: List[str] = ["energy", "free_energy", "forces"]

    def __init__(self, model_file: str, device: str = "cpu", precision: Optional[str] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.module, self.metadata = load_model(model_file, device=device)
        if precision is not None:
            if precision not in DTYPES:
                raise ValueError(f"precision must be one of {sorted(DTYPES)} or None, got {precision!r}")
            self.module = self.module.to(DTYPES[precision])
        self.device = torch.device(device)
        self.dtype = model_dtype(self.module)
        self._index = {symbol: k for k, symbol in enumerate(self.metadata["elements"])}
        self._species_cache: Optional[Tuple[np.ndarray, torch.Tensor]] = None  # (numbers [N], species [N])

    def _species(self, atoms) -> torch.Tensor:
        """[N] species indices of ``atoms``; remembered for the last atomic numbers seen, since MD calls this
        every step with the same atoms."""
        numbers = np.asarray(atoms.numbers)
        if self._species_cache is not None and np.array_equal(self._species_cache[0], numbers):
            return self._species_cache[1]
        symbols = atoms.get_chemical_symbols()
        for i, symbol in enumerate(symbols):
            if symbol not in self._index:
                raise ValueError(
                    f"atom {i} is element {symbol}; the model knows only {self.metadata['elements']}"
                )
        species = torch.tensor([self._index[s] for s in symbols], dtype=torch.long, device=self.device)
        self._species_cache = (numbers.copy(), species)
        return species

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        pbc = self.atoms.pbc
        if pbc.any() and not pbc.all():
            raise ValueError(f"mixed periodicity {pbc.tolist()} is not supported: use all or none")
        positions = torch.tensor(self.atoms.positions, dtype=self.dtype, device=self.device, requires_grad=True)
        cell: Optional[torch.Tensor] = None
        if pbc.all():
            cell = torch.tensor(np.asarray(self.atoms.cell), dtype=self.dtype, device=self.device)
        energy = self.module(positions, self._species(self.atoms), cell)  # eV
        (gradient,) = torch.autograd.grad(energy, positions)
        self.results["energy"] = float(energy.detach())
        self.results["free_energy"] = float(energy.detach())
        self.results["forces"] = (-gradient).detach().cpu().numpy().astype(np.float64)  # [N, 3] eV/Å
