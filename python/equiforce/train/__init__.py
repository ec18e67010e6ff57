"""Training of equivariant potentials: ``TrainConfig`` (Python or YAML) and ``train`` / ``Trainer``.

Example::

    from equiforce.train import TrainConfig, train
    metrics = train(TrainConfig(data="water.extxyz", model={"num_features": 32}, output_dir="runs/water"))

or, from a shell, ``equiforce train config.yaml`` with the fields of :class:`TrainConfig` as YAML keys.
Metrics are in meV/atom (energies) and meV/Å (forces); property heads (``model={"heads": ["dipole"]}``,
``dipole_weight``, ``polarizability_weight``) add their errors in e·Å and Å³.

Several processes: ``torchrun --nproc_per_node N -m equiforce train config.yaml`` (``batch_size`` is the global
batch; see :class:`Distributed` and docs/training.md).
"""
from ._config import RESUMABLE_KEYS, TrainConfig
from ._distributed import Distributed
from ._ema import ExponentialMovingAverage
from ._metrics import MEV_PER_EV, ErrorMetrics, predict, weighted_loss
from ._properties import LABELLED_HEADS, PropertyMetrics, predict_properties, property_loss
from ._trainer import Trainer, resolve_device, train

__all__ = [
    "TrainConfig",
    "Trainer",
    "train",
    "RESUMABLE_KEYS",
    "Distributed",
    "ExponentialMovingAverage",
    "ErrorMetrics",
    "predict",
    "weighted_loss",
    "predict_properties",
    "property_loss",
    "PropertyMetrics",
    "LABELLED_HEADS",
    "resolve_device",
    "MEV_PER_EV",
]
