"""Loss terms and error metrics of the labelled property heads: dipole (e·Å) and polarizability (Å³)."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..data import Batch

#: Heads that are trained against labels, with the unit of their errors (as written to metrics.json).
LABELLED_HEADS = {"dipole": "e*angstrom", "polarizability": "angstrom^3"}


def predict_properties(model, batch: Batch, create_graph: bool) -> Tuple[Tensor, Tensor, Dict[str, Tensor]]:
    """Energies [B] (eV), forces [N, 3] (eV/Å, by autograd) and head outputs {name: [B, ...]} of a batch.

    One pass through the trunk (``model.batch_properties``); ``create_graph`` as in :func:`predict`.
    """
    with torch.enable_grad():
        positions = batch.positions.detach().requires_grad_(True)  # [N, 3]
        outputs = model.batch_properties(
            positions, batch.species, batch.edge_index, batch.edge_offsets, batch.batch, batch.num_graphs
        )
        energy = outputs.pop("energy")  # [B]
        (gradient,) = torch.autograd.grad(energy.sum(), positions, create_graph=create_graph, retain_graph=True)
    if not create_graph:
        energy = energy.detach()
        outputs = {name: value.detach() for name, value in outputs.items()}
    return energy, -gradient, outputs


def _labelled(prediction: Tensor, label: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """Predictions and labels [M, ...] of the frames whose label is present (finite)."""
    if label is None:
        return prediction[:0], prediction[:0]
    present = torch.isfinite(label.flatten(1)).all(dim=1)  # [B]
    return prediction[present], label[present]


def labelled_components(batch: Batch, heads: Sequence[str]) -> Dict[str, int]:
    """Number of label components (3 per dipole, 9 per polarizability) of the batch's labelled frames, per head."""
    counts: Dict[str, int] = {}
    for name in heads:
        label = getattr(batch, name)
        if label is None:
            counts[name] = 0
        else:
            present = torch.isfinite(label.flatten(1)).all(dim=1)  # [B]
            counts[name] = int(present.sum()) * label[0].numel()
    return counts


def property_loss(
    outputs: Dict[str, Tensor], batch: Batch, weights: Dict[str, float], counts: Optional[Dict[str, float]] = None
) -> Tensor:
    """Σ_head weight · mean((prediction - label)²) over the components of labelled frames ((e·Å)², Å⁶); 0-dim.

    Heads with weight 0 or without labels in the batch add nothing. ``counts`` ({head: components}) replaces the
    batch's own number of labelled components as the divisor (global counts for a part of a global batch).
    """
    reference = next(iter(outputs.values()))
    loss = torch.zeros((), dtype=reference.dtype, device=reference.device)
    for name, weight in weights.items():
        if weight <= 0 or name not in outputs:
            continue
        prediction, label = _labelled(outputs[name], getattr(batch, name))
        if prediction.shape[0] > 0:
            if counts is None:
                loss = loss + weight * ((prediction - label) ** 2).mean()
            else:
                loss = loss + weight * ((prediction - label) ** 2).sum() / float(counts[name])
    return loss


class PropertyMetrics:
    """Accumulates per-head errors over batches: MAE/RMSE over components (e·Å, Å³) and the weighted loss term.

    Parameters
    ----------
    heads
        Names of the labelled heads of the model (a subset of :data:`LABELLED_HEADS`).
    weights
        Loss weight of each head (see :func:`property_loss`).
    """

    def __init__(self, heads: Sequence[str], weights: Dict[str, float]) -> None:
        self.heads: List[str] = [h for h in heads if h in LABELLED_HEADS]
        self.weights = {h: float(weights.get(h, 0.0)) for h in self.heads}
        self._sums = {h: torch.zeros(3, dtype=torch.float64) for h in self.heads}  # |Δ|, Δ², components

    @torch.no_grad()
    def update(self, outputs: Dict[str, Tensor], batch: Batch) -> None:
        """Add one batch of head outputs {name: [B, ...]} against the batch's labels."""
        for name in self.heads:
            prediction, label = _labelled(outputs[name].detach(), getattr(batch, name))
            delta = (prediction - label).double().cpu()  # [M, ...]
            self._sums[name] += torch.stack(
                [delta.abs().sum(), (delta**2).sum(), torch.tensor(float(delta.numel()), dtype=torch.float64)]
            )

    def to_tensor(self) -> Tensor:
        """The accumulated sums as one float64 CPU tensor [3 · heads] (|Δ|, Δ², components per head)."""
        if not self.heads:
            return torch.zeros(0, dtype=torch.float64)
        return torch.cat([self._sums[h] for h in self.heads])

    def load_tensor(self, packed: Tensor) -> None:
        """Replace the sums by ``packed`` (the layout of :meth:`to_tensor`, e.g. summed over processes)."""
        packed = packed.detach().to(device="cpu", dtype=torch.float64)
        for k, name in enumerate(self.heads):
            self._sums[name] = packed[3 * k : 3 * k + 3].clone()

    def compute(self) -> Dict[str, float]:
        """``{head}_mae`` / ``{head}_rmse`` (e·Å for the dipole, Å³ for the polarizability) and ``{head}_frames``
        for heads with labelled frames, plus ``loss``: Σ weight · mean squared error."""
        result: Dict[str, float] = {"loss": 0.0}
        for name in self.heads:
            absolute, square, count = (float(v) for v in self._sums[name])
            if count == 0:
                continue
            result[f"{name}_mae"] = absolute / count
            result[f"{name}_rmse"] = (square / count) ** 0.5
            result[f"{name}_frames"] = int(round(count / (3 if name == "dipole" else 9)))
            result["loss"] += self.weights[name] * square / count
        return result
