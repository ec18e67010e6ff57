"""Training settings: one dataclass, read from YAML or built in Python."""
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

SCHEDULES = ("plateau", "cosine")
FLOAT_DTYPES = ("float32", "float64")

#: Settings that may change when a run is resumed; every other setting must match the checkpoint's. (The frames
#: themselves are checked separately, so ``max_frames`` may change as long as it selects the same frames.)
RESUMABLE_KEYS = ("max_epochs", "patience", "output_dir", "device", "progress", "export", "export_dtype", "max_frames")


@dataclass
class TrainConfig:
    """Everything a training run needs. Units: Å, eV, eV/Å.

    Parameters
    ----------
    data
        Path or list of paths of labelled frames (extxyz or anything ASE reads); frames are concatenated.
    output_dir
        Where ``last.ckpt``, ``best.ckpt``, ``history.csv``/``history.json`` and ``metrics.json`` go.
    max_frames
        Use only the first ``max_frames`` frames of ``data`` (``None``: all).
    train_repeats
        One whole number per entry of ``data``: how many times each training frame of that entry is visited per
        epoch (``None``: once each). Weights a small set of rare configurations (distorted molecules) against a
        large one without copying files; the validation and test splits, and the statistics that initialise
        the model, see every frame once.
    energy_key, forces_key
        Label names in the files (calculator results, then ``info`` / ``arrays``).
    split
        Fractions (train, validation, test) of the frames; see :func:`equiforce.data.split_indices`.
    seed
        Seeds the split, the model initialisation and the shuffling.
    model
        Keyword arguments of :class:`~equiforce.nn.ModelConfig`. ``elements`` defaults to the elements in the
        data (by atomic number); ``atomic_energy_shifts`` (least-squares per-element energies, eV),
        ``atomic_energy_scales`` (RMS force component, eV/Å, used as an energy scale in eV) and
        ``avg_num_neighbors`` default to statistics of the training split.
    energy_weight, force_weight
        Loss = energy_weight · mean((ΔE / N)²) [(eV/atom)²] + force_weight · mean(ΔF²) [(eV/Å)²].
    dipole_weight, polarizability_weight
        Weights of the property heads' terms, added to the loss: dipole_weight · mean(Δμ²) [(e·Å)²] and
        polarizability_weight · mean(Δα²) [Å⁶], means over the components of the frames that carry the label.
        Default 0 (no term). A positive weight needs the head in ``model["heads"]``.
    dipole_key, polarizability_key
        Label names of the dipole (3 values, e·Å, open frames only) and polarizability (3 × 3 or 9 values, Å³),
        read (calculator results, then ``info``) when the model has the head.
    batch_size
        Frames per optimisation step.
    lr, weight_decay
        AdamW learning rate and decoupled weight decay.
    schedule
        ``"plateau"`` (multiply the lr by ``lr_factor`` after ``lr_patience`` epochs without a better validation
        loss) or ``"cosine"`` (cosine decay from ``lr`` to ``min_lr`` over ``max_epochs``); stepped per epoch.
    lr_factor, lr_patience, min_lr
        Schedule settings (``min_lr`` is the floor of both schedules).
    ema_decay
        Decay of the exponential moving average of the weights, updated every step (0 disables averaging).
        Validation, early stopping, ``best.ckpt`` and the export use the averaged weights.
    clip_grad_norm
        Clip the gradient norm to this value (``None``: no clipping).
    max_epochs
        Number of epochs to train.
    patience
        Stop after this many epochs without a better validation loss (``None``: never stop early).
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    dtype
        ``"float64"`` or ``"float32"`` for the model and data during training.
    init_from
        Fine-tune: start from the weights of this checkpoint (``best.ckpt`` / ``last.ckpt`` of an earlier run, its
        averaged weights when it has them) instead of a random initialisation. The architecture and the energy
        shifts and scales come from the checkpoint, so ``model`` may only set the short-range wall
        (``repulsion_radii``, ``repulsion_strength``); the optimiser, schedule and split start afresh on ``data``.
    export
        If set, export the best checkpoint's averaged weights to this TorchScript path at the end.
    export_dtype
        ``"float32"`` or ``"float64"`` for the exported file.
    progress
        Show a tqdm progress bar and one summary line per epoch.
    """

    data: Union[str, List[str]]
    output_dir: str = "runs/equiforce"
    max_frames: Optional[int] = None
    train_repeats: Optional[List[int]] = None
    energy_key: str = "energy"
    forces_key: str = "forces"
    split: List[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = 0
    model: Dict[str, Any] = field(default_factory=dict)
    energy_weight: float = 10.0
    force_weight: float = 1.0
    dipole_weight: float = 0.0
    polarizability_weight: float = 0.0
    dipole_key: str = "dipole"
    polarizability_key: str = "polarizability"
    batch_size: int = 4
    lr: float = 5e-3
    weight_decay: float = 0.0
    schedule: str = "plateau"
    lr_factor: float = 0.5
    lr_patience: int = 10
    min_lr: float = 1e-6
    ema_decay: float = 0.99
    clip_grad_norm: Optional[float] = 10.0
    max_epochs: int = 100
    patience: Optional[int] = 50
    device: str = "auto"
    dtype: str = "float64"
    init_from: Optional[str] = None
    export: Optional[str] = None
    export_dtype: str = "float32"
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.data, (list, tuple)):
            self.data = [str(p) for p in self.data]
        else:
            self.data = str(self.data)
        self.split = [float(f) for f in self.split]
        self.model = dict(self.model or {})
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("dtype", "export_dtype"):
            if getattr(self, name) not in FLOAT_DTYPES:
                raise ValueError(f"TrainConfig.{name} must be one of {FLOAT_DTYPES}, got {getattr(self, name)!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"TrainConfig.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.batch_size < 1 or self.max_epochs < 0:
            raise ValueError("TrainConfig.batch_size must be >= 1 and max_epochs >= 0")
        if self.energy_weight < 0 or self.force_weight < 0 or self.energy_weight + self.force_weight == 0:
            raise ValueError("TrainConfig.energy_weight and force_weight must be >= 0, not both 0")
        heads = list(self.model.get("heads") or [])
        for head in ("dipole", "polarizability"):
            weight = getattr(self, f"{head}_weight")
            if weight < 0:
                raise ValueError(f"TrainConfig.{head}_weight must be >= 0, got {weight}")
            if weight > 0 and head not in heads:
                raise ValueError(
                    f"TrainConfig.{head}_weight = {weight} but the model has no {head} head: add {head!r} to "
                    f"model['heads'] (now {heads})"
                )
        if self.train_repeats is not None:
            entries = 1 if isinstance(self.data, str) else len(self.data)
            if len(self.train_repeats) != entries or any(int(r) != r or r < 1 for r in self.train_repeats):
                raise ValueError(
                    f"TrainConfig.train_repeats must give one whole number >= 1 per data entry ({entries}), "
                    f"got {self.train_repeats}"
                )
            self.train_repeats = [int(r) for r in self.train_repeats]
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"TrainConfig.patience must be >= 1 or None, got {self.patience}")

    def to_dict(self) -> Dict[str, Any]:
        """Plain-Python dictionary (YAML-, JSON- and ``weights_only``-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise an error that lists the known ones."""
        if not isinstance(data, dict):
            raise ValueError(f"a training config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(data) - known)
        if extra:
            raise ValueError(f"unknown training settings {extra}; known settings are {sorted(known)}")
        if "data" not in data:
            raise ValueError("the training config needs 'data' (a path or a list of paths)")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str) -> "TrainConfig":
        """Read a YAML file whose top-level keys are the fields of this class."""
        import yaml

        with open(path) as handle:
            data = yaml.safe_load(handle)
        try:
            return cls.from_dict(data if data is not None else {})
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from error
