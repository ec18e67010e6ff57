"""Errors of an exported model against labelled frames (``equiforce evaluate MODEL DATA``).

Energies are compared per atom (meV/atom), forces per component (meV/Å), overall and per element. The model
runs exactly as exported (TorchScript file, its own dtype and neighbour list), so these are the errors a user
of that file gets.
"""
import json
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from .data import read_structures
from .export import load_model

MEV_PER_EV = 1000.0


def evaluate_model(
    model_file: str,
    data: Union[str, Sequence[str]],
    start: int = 0,
    stop: Optional[int] = None,
    progress: bool = False,
    indices: Optional[Sequence[int]] = None,
) -> Dict[str, object]:
    """Energy and force errors of ``model_file`` on frames ``start:stop`` of ``data`` (extxyz or any ASE format),
    or on the frames ``indices`` (of the concatenated files) when given.

    Returns a dict with ``frames``, ``atoms``, ``energy_mae``/``energy_rmse`` (meV/atom), ``force_mae``/
    ``force_rmse`` (meV/Å), ``force_mae_per_element``/``force_rmse_per_element`` (meV/Å) and ``sources``
    (the first and last frame evaluated).
    """
    from tqdm.auto import tqdm

    model, metadata = load_model(model_file)
    elements: List[str] = list(metadata["elements"])
    dtype = getattr(torch, metadata["dtype"])
    structures = read_structures(data)
    if indices is not None:
        outside = [i for i in indices if not 0 <= i < len(structures)]
        if outside:
            raise ValueError(f"frame indices {outside[:5]} are outside the {len(structures)} frames of {data}")
        structures = [structures[i] for i in indices]
    else:
        structures = structures[start:stop]
    if not structures:
        raise ValueError(f"no frames in {data} between {start} and {stop}")
    energy_errors: List[float] = []  # [frames] eV/atom
    force_errors: List[np.ndarray] = []  # [atoms, 3] eV/Å per frame
    symbols: List[str] = []
    for structure in tqdm(structures, desc="evaluate", disable=not progress, unit="frame"):
        unknown = sorted(set(structure.symbols) - set(elements))
        if unknown:
            raise ValueError(f"{structure.source}: element(s) {unknown} are not in the model's {elements}")
        species = torch.tensor([elements.index(s) for s in structure.symbols])
        positions = structure.positions.to(dtype).clone().requires_grad_(True)
        cell = structure.cell.to(dtype) if structure.cell is not None else None
        energy = model(positions, species, cell)
        (gradient,) = torch.autograd.grad(energy, positions)
        n_atoms = len(structure.symbols)
        energy_errors.append((float(energy.detach()) - structure.energy) / n_atoms)
        force_errors.append((-gradient).detach().double().numpy() - structure.forces.numpy())
        symbols.extend(structure.symbols)
    energy_errors_mev = MEV_PER_EV * np.abs(np.array(energy_errors))
    forces_mev = MEV_PER_EV * np.concatenate(force_errors)  # [atoms, 3]
    symbols_array = np.array(symbols)
    per_element_mae = {e: float(np.abs(forces_mev[symbols_array == e]).mean()) for e in elements
                       if np.any(symbols_array == e)}
    per_element_rmse = {e: float(np.sqrt((forces_mev[symbols_array == e] ** 2).mean())) for e in elements
                        if np.any(symbols_array == e)}
    return {
        "model": model_file,
        "data": data if isinstance(data, str) else list(data),
        "frames": len(structures),
        "atoms": len(symbols),
        "first_frame": structures[0].source,
        "last_frame": structures[-1].source,
        "energy_mae": float(energy_errors_mev.mean()),
        "energy_rmse": float(np.sqrt((energy_errors_mev**2).mean())),
        "force_mae": float(np.abs(forces_mev).mean()),
        "force_rmse": float(np.sqrt((forces_mev**2).mean())),
        "force_mae_per_element": per_element_mae,
        "force_rmse_per_element": per_element_rmse,
        "units": {"energy": "meV/atom", "forces": "meV/angstrom"},
    }


def format_errors(result: Dict[str, object]) -> str:
    per_element = ", ".join(f"{e} {v:.1f}" for e, v in result["force_mae_per_element"].items())
    return (f"{result['frames']} frames ({result['first_frame']} .. {result['last_frame']}): energy MAE "
            f"{result['energy_mae']:.3f} meV/atom (RMSE {result['energy_rmse']:.3f}), force MAE "
            f"{result['force_mae']:.1f} meV/Å (RMSE {result['force_rmse']:.1f}; per element {per_element})")


def write_json(result: Dict[str, object], path: str) -> None:
    with open(path, "w") as handle:
        json.dump(result, handle, indent=1)
        handle.write("\n")
