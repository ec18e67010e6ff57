"""Loss and error metrics: energies per atom (meV/atom), forces overall and per element (meV/Å)."""
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..data import Batch

#: meV per eV (metrics are reported in meV/atom and meV/Å).
MEV_PER_EV = 1000.0


def predict(model, batch: Batch, create_graph: bool) -> Tuple[Tensor, Tensor]:
    """Energies [num_graphs] (eV) and forces [N, 3] (eV/Å, = -dE/dr by autograd) of a batch.

    ``create_graph=True`` keeps the graph of the forces so that a force loss can be back-propagated.
    """
    with torch.enable_grad():
        positions = batch.positions.detach().requires_grad_(True)  # [N, 3]
        energy = model.batch_energy(
            positions, batch.species, batch.edge_index, batch.edge_offsets, batch.batch, batch.num_graphs
        )  # [B]
        (gradient,) = torch.autograd.grad(energy.sum(), positions, create_graph=create_graph)
    if not create_graph:
        energy = energy.detach()
    return energy, -gradient


def weighted_loss(
    energy: Tensor,
    forces: Tensor,
    batch: Batch,
    energy_weight: float,
    force_weight: float,
    num_frames: Optional[float] = None,
    num_components: Optional[float] = None,
) -> Tensor:
    """energy_weight · mean(((E - E_ref)/N)²) + force_weight · mean((F - F_ref)²), in eV² units (0-dim).

    ``num_frames`` and ``num_components`` (force components) replace the batch's own counts as the divisors of
    the two sums: a process holding part of a global batch passes the global counts, so that the processes'
    losses add up to the loss of the whole batch.
    """
    per_atom = (energy - batch.energy) / batch.num_atoms.to(energy.dtype)  # [B] eV/atom
    if num_frames is None and num_components is None:
        energy_term = (per_atom**2).mean()
        force_term = ((forces - batch.forces) ** 2).mean()
    else:
        frames = float(batch.num_graphs if num_frames is None else num_frames)
        components = float(forces.numel() if num_components is None else num_components)
        energy_term = (per_atom**2).sum() / frames
        force_term = ((forces - batch.forces) ** 2).sum() / components
    return energy_weight * energy_term + force_weight * force_term


class ErrorMetrics:
    """Accumulates errors over batches; :meth:`compute` gives MAE/RMSE and the weighted loss.

    Parameters
    ----------
    elements
        Chemical symbols of the species indices (for per-element force errors).
    energy_weight, force_weight
        Loss weights, as in :func:`weighted_loss`.
    """

    def __init__(self, elements: Sequence[str], energy_weight: float, force_weight: float) -> None:
        self.elements = list(elements)
        self.energy_weight = float(energy_weight)
        self.force_weight = float(force_weight)
        self.num_frames = 0
        self._sums: Optional[Dict[str, Tensor]] = None

    @torch.no_grad()
    def update(self, energy: Tensor, forces: Tensor, batch: Batch) -> None:
        """Add one batch: predicted energies [B] eV and forces [N, 3] eV/Å against the batch's references."""
        s = len(self.elements)
        per_atom = (energy.detach() - batch.energy).double() / batch.num_atoms.double()  # [B] eV/atom
        delta = (forces.detach() - batch.forces).double()  # [N, 3] eV/Å
        count = torch.bincount(batch.species, minlength=s).double() * 3  # [S] force components per element
        zeros = torch.zeros(s, dtype=torch.float64, device=delta.device)  # [S]
        abs_sum = zeros.index_add(0, batch.species, delta.abs().sum(1))  # [S] eV/Å
        sq_sum = zeros.index_add(0, batch.species, (delta**2).sum(1))  # [S] (eV/Å)²
        batch_sums = {
            "energy_abs": per_atom.abs().sum(),
            "energy_sq": (per_atom**2).sum(),
            "force_abs": abs_sum,  # [S]
            "force_sq": sq_sum,  # [S]
            "force_count": count,  # [S]
        }
        if self._sums is None:
            self._sums = batch_sums
        else:
            for key, value in batch_sums.items():
                self._sums[key] = self._sums[key] + value
        self.num_frames += batch.num_graphs

    def to_tensor(self, device: Optional[torch.device] = None) -> Tensor:
        """The accumulated sums as one float64 tensor [3 S + 3] (zeros before any update), for an all-reduce."""
        s = len(self.elements)
        if self._sums is None:
            sums = torch.zeros(3 * s + 2, dtype=torch.float64, device=device)
        else:
            sums = torch.cat(
                [
                    self._sums["energy_abs"].reshape(1),
                    self._sums["energy_sq"].reshape(1),
                    self._sums["force_abs"],
                    self._sums["force_sq"],
                    self._sums["force_count"],
                ]
            ).to(device=device)
        frames = torch.tensor([float(self.num_frames)], dtype=torch.float64, device=sums.device)
        return torch.cat([sums, frames])  # [3 S + 3]

    def load_tensor(self, packed: Tensor) -> None:
        """Replace the sums by ``packed`` (the layout of :meth:`to_tensor`, e.g. summed over processes)."""
        s = len(self.elements)
        packed = packed.detach().to(torch.float64)
        self.num_frames = int(round(float(packed[-1])))
        if self.num_frames == 0:
            self._sums = None
            return
        self._sums = {
            "energy_abs": packed[0],
            "energy_sq": packed[1],
            "force_abs": packed[2 : 2 + s],
            "force_sq": packed[2 + s : 2 + 2 * s],
            "force_count": packed[2 + 2 * s : 2 + 3 * s],
        }

    def running(self) -> Dict[str, float]:
        """Cheap summary for a progress bar: loss, E MAE (meV/atom), F MAE (meV/Å)."""
        m = self.compute(per_element=False)
        return {"loss": m["loss"], "E_MAE": m["energy_mae"], "F_MAE": m["force_mae"]}

    def compute(self, per_element: bool = True) -> Dict[str, object]:
        """Metrics so far.

        Returns
        -------
        dict with ``loss`` (weighted, eV² units), ``energy_mae`` / ``energy_rmse`` (meV/atom), ``force_mae`` /
        ``force_rmse`` (meV/Å, over force components), ``num_frames``, and with ``per_element``:
        ``force_mae_per_element`` / ``force_rmse_per_element`` ({symbol: meV/Å}, elements present only).
        """
        if self._sums is None:
            return {"num_frames": 0}
        sums = {key: value.detach().cpu() for key, value in self._sums.items()}
        n = float(self.num_frames)
        components = float(sums["force_count"].sum())
        energy_mse = float(sums["energy_sq"]) / n
        force_mse = float(sums["force_sq"].sum()) / components
        result: Dict[str, object] = {
            "loss": self.energy_weight * energy_mse + self.force_weight * force_mse,
            "energy_mae": MEV_PER_EV * float(sums["energy_abs"]) / n,
            "energy_rmse": MEV_PER_EV * energy_mse**0.5,
            "force_mae": MEV_PER_EV * float(sums["force_abs"].sum()) / components,
            "force_rmse": MEV_PER_EV * force_mse**0.5,
            "num_frames": self.num_frames,
        }
        if per_element:
            mae, rmse = {}, {}
            for k, symbol in enumerate(self.elements):
                c = float(sums["force_count"][k])
                if c > 0:
                    mae[symbol] = MEV_PER_EV * float(sums["force_abs"][k]) / c
                    rmse[symbol] = MEV_PER_EV * (float(sums["force_sq"][k]) / c) ** 0.5
            result["force_mae_per_element"] = mae
            result["force_rmse_per_element"] = rmse
        return result
