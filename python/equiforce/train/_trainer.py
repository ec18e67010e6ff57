"""The training loop: data set up once, AdamW + schedule + EMA, early stopping, exact resume, final metrics."""
import dataclasses
import hashlib
import math
import os
import time
from typing import Any, Dict, List, Optional

import torch

from ..checkpoint import load_checkpoint, save_checkpoint
from ..data import (
    DataError,
    GraphDataset,
    average_num_neighbors,
    chemical_symbols,
    fit_energy_shifts,
    force_rms,
    collate,
    iterate_batches,
    num_batches,
    read_structures_by_path,
    split_indices,
)
from ..nn import EquivariantPotential, ModelConfig, build_model
from ..units import MODEL_UNITS
from ._config import RESUMABLE_KEYS, TrainConfig
from ._distributed import Distributed, global_counts
from ._ema import ExponentialMovingAverage
from ._history import write_history, write_json
from ._metrics import ErrorMetrics, predict, weighted_loss
from ._properties import LABELLED_HEADS, PropertyMetrics, labelled_components, predict_properties, property_loss

DTYPES = {"float32": torch.float32, "float64": torch.float64}
LAST, BEST, METRICS = "last.ckpt", "best.ckpt", "metrics.json"
#: Units of the numbers in history.* and metrics.json.
METRIC_UNITS = {"energy": "meV/atom", "forces": "meV/angstrom", "loss": "eV^2 (weighted (eV/atom)^2 + (eV/angstrom)^2)"}


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; a CUDA device that is not there is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available")
    return torch.device(name)


def data_fingerprint(structures) -> str:
    """SHA-256 of the frames' sources, symbols, energies and coordinates (detects changed data on resume), and
    of their dipole and polarizability labels where they have them (frames without are hashed as before)."""
    digest = hashlib.sha256()
    for structure in structures:
        digest.update(f"{structure.source}|{','.join(structure.symbols)}|{structure.energy!r}|".encode())
        digest.update(structure.positions.numpy().tobytes())
        for name in ("dipole", "polarizability"):
            label = getattr(structure, name)
            if label is not None:
                digest.update(f"|{name}|".encode() + label.numpy().tobytes())
    return digest.hexdigest()


class Trainer:
    """Train an :class:`~equiforce.nn.EquivariantPotential` on labelled frames.

    With dipole or polarizability heads in ``config.model["heads"]`` the model is a
    :class:`~equiforce.nn.PropertyModel`, the labels are read too, and the heads' loss terms
    (``dipole_weight``, ``polarizability_weight``) and errors (``dipole_mae`` ... in e·Å, Å³) are added;
    without them training is exactly what it was before heads existed.

    Parameters
    ----------
    config
        The settings (see :class:`TrainConfig`).
    resume
        ``None``: resume when ``output_dir/last.ckpt`` exists; ``True``: resume and fail if it does not;
        ``False``: start afresh (files in ``output_dir`` are overwritten).

    Notes
    -----
    Construction reads the data, splits it, computes the neighbour lists (once per frame) and the statistics that
    initialise the model (training split only), builds the model, optimiser, schedule and weight average, and on
    resume restores all of their states plus the random-number generators, so that resumed training repeats an
    uninterrupted run exactly (bitwise on CPU).

    Launched by ``torchrun`` (``WORLD_SIZE`` > 1), or with a process group the caller initialised, the processes
    train together (see :class:`~equiforce.train.Distributed`): ``batch_size`` is the global batch, each process
    computes a contiguous part of every global batch (the same shuffled order on every process) and
    back-propagates its share of the global-batch loss, the gradients are summed over the processes before the
    step, and training and validation metrics are summed over them too, so every process follows the
    single-process run (up to float rounding). Only rank 0 writes files and prints; every rank reads
    ``last.ckpt`` on resume.
    """

    def __init__(self, config: TrainConfig, resume: Optional[bool] = None) -> None:
        self.config = config
        device = resolve_device(config.device)
        #: This process among the training processes (rank 0 of 1 without torchrun).
        self.distributed = Distributed.from_environment(config.device)
        self.device = self.distributed.device(device)
        self.dtype = DTYPES[config.dtype]
        self.output_dir = config.output_dir
        checkpoint = self._checkpoint_to_resume(resume)

        heads = list(config.model.get("heads") or [])
        groups = read_structures_by_path(
            config.data,
            config.max_frames,
            energy_key=config.energy_key,
            forces_key=config.forces_key,
            dipole_key=config.dipole_key if "dipole" in heads else None,
            polarizability_key=config.polarizability_key if "polarizability" in heads else None,
        )
        structures = [structure for group in groups for structure in group]
        entry_of_frame = [entry for entry, group in enumerate(groups) for _ in group]  # [frames] data entry index
        splits = split_indices(len(structures), config.split, config.seed)
        self.split = dict(zip(("train", "validation", "test"), splits))  # frame indices
        self.data_fingerprint = data_fingerprint(structures)
        if checkpoint is not None:
            self._check_compatible(checkpoint)
            model_config = ModelConfig.from_dict(checkpoint["config"])
            dataset = GraphDataset(structures, model_config.elements, model_config.cutoff)
            self.statistics = checkpoint["statistics"]
        elif config.init_from:
            initial = load_checkpoint(config.init_from)
            model_config = self._model_config_to_fine_tune(initial)
            dataset = GraphDataset(structures, model_config.elements, model_config.cutoff)
            self.statistics = {"init_from": config.init_from, **initial.get("statistics", {})}
        else:
            model_config, dataset = self._model_config_from_data(structures)
        self.model_config = model_config
        self.sources = dataset.sources
        dataset.to(self.device, self.dtype)
        self.graphs = {name: dataset.subset(indices) for name, indices in self.split.items()}
        if config.train_repeats is not None:  # each training frame of entry e visited train_repeats[e] times
            visits = [i for i in self.split["train"] for _ in range(config.train_repeats[entry_of_frame[i]])]
            self.graphs["train"] = dataset.subset(visits)
        #: Heads trained against labels (dipole, polarizability); empty: the energy-only loop, as before heads.
        self.labelled_heads = [h for h in model_config.heads if h in LABELLED_HEADS]
        self.head_weights = {"dipole": config.dipole_weight, "polarizability": config.polarizability_weight}
        self._check_head_labels()

        torch.manual_seed(config.seed)
        self.model = build_model(model_config).to(device=self.device, dtype=self.dtype)
        with torch.no_grad():  # the model builds these buffers in float32; set them at full precision
            self.model.network.energy_shift.copy_(torch.tensor(model_config.atomic_energy_shifts, dtype=torch.float64))
            self.model.network.energy_scale.copy_(torch.tensor(model_config.atomic_energy_scales, dtype=torch.float64))
        if checkpoint is None and config.init_from:
            weights = initial.get("ema_state") if initial.get("ema_state") is not None else initial["model_state"]
            self.model.load_state_dict(weights)
        averaged = build_model(model_config).to(device=self.device, dtype=self.dtype)
        self.ema = ExponentialMovingAverage(self.model, averaged, config.ema_decay)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        if config.schedule == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience, min_lr=config.min_lr
            )
        else:
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=max(1, config.max_epochs), eta_min=config.min_lr
            )
        self.shuffle_generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0
        self.best_metric = math.inf
        self.best_epoch = 0
        self.epochs_without_improvement = 0
        self.history: List[Dict[str, Any]] = []
        if checkpoint is not None:
            self._restore(checkpoint)
        self.distributed.check_same(
            "the data and the epoch to start from", (self.data_fingerprint, self.epoch, self.best_epoch)
        )
        self.distributed.broadcast_module_(self.model)
        self.distributed.broadcast_module_(self.ema.model)

    # ----------------------------------------------------------------------------------------------- set-up
    def _path(self, name: str) -> str:
        return os.path.join(self.output_dir, name)

    def _checkpoint_to_resume(self, resume: Optional[bool]) -> Optional[Dict[str, Any]]:
        last = self._path(LAST)
        if resume is False:
            return None
        if not os.path.exists(last):
            if resume:
                raise FileNotFoundError(f"cannot resume: {last} does not exist")
            return None
        return load_checkpoint(last)

    def _check_head_labels(self) -> None:
        """A head with a positive loss weight needs labelled frames in the training split."""
        for name in self.labelled_heads:
            if self.head_weights[name] > 0 and not any(getattr(g, name) is not None for g in self.graphs["train"]):
                raise DataError(
                    f"{name}_weight is {self.head_weights[name]} but no training frame has a {name} label "
                    f"(key {getattr(self.config, name + '_key')!r})"
                )

    def _check_compatible(self, checkpoint: Dict[str, Any]) -> None:
        """Refuse to resume with different settings (other than :data:`RESUMABLE_KEYS`) or different data.

        A setting missing from an older checkpoint counts as its default (settings added later, such as the
        head weights, do not block resuming runs that did not use them).
        """
        stored, current = checkpoint["train_config"], self.config.to_dict()
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
        changed = sorted(
            k for k in current if k not in RESUMABLE_KEYS and stored.get(k, defaults.get(k)) != current[k]
        )
        if changed:
            raise ValueError(
                f"cannot resume {self._path(LAST)}: settings {changed} differ from the checkpoint's "
                f"({', '.join(f'{k}={stored.get(k)!r}' for k in changed)}); use another output_dir or restart"
            )
        if checkpoint["data_fingerprint"] != self.data_fingerprint or checkpoint["split"] != self.split:
            sizes = {k: len(v) for k, v in checkpoint["split"].items()}
            raise ValueError(
                f"cannot resume {self._path(LAST)}: the data changed (split sizes then {sizes}, now "
                f"{ {k: len(v) for k, v in self.split.items()} }); set max_frames or restart"
            )

    def _model_config_to_fine_tune(self, initial: Dict[str, Any]) -> ModelConfig:
        """The checkpoint's ModelConfig; ``config.model`` may only change the short-range wall."""
        stored = ModelConfig.from_dict(initial["config"])
        wall = {"repulsion_radii", "repulsion_strength"}
        other = sorted(k for k, v in self.config.model.items() if k not in wall and getattr(stored, k, None) != v)
        if other:
            raise ValueError(
                f"init_from {self.config.init_from}: the model settings {other} differ from the checkpoint's; a "
                "fine-tuned model keeps its architecture and energy shifts (only repulsion_radii and "
                "repulsion_strength may be set)"
            )
        return dataclasses.replace(stored, **{k: v for k, v in self.config.model.items() if k in wall})

    def _model_config_from_data(self, structures) -> "tuple[ModelConfig, GraphDataset]":
        """ModelConfig from ``config.model``, with elements and normalisation taken from the training split."""
        settings = dict(self.config.model)
        settings.setdefault("elements", chemical_symbols(structures))
        base = ModelConfig(**settings)
        dataset = GraphDataset(structures, base.elements, base.cutoff)
        train = dataset.subset(self.split["train"])
        shifts = fit_energy_shifts(train, len(base.elements))  # [S] eV
        scale = force_rms(train)  # eV/Å
        neighbours = average_num_neighbors(train)
        self.statistics = {
            "energy_shifts_eV": dict(zip(base.elements, shifts)),
            "force_rms_eV_per_angstrom": scale,
            "avg_num_neighbors": neighbours,
        }
        derived: Dict[str, Any] = {}
        if "atomic_energy_shifts" not in self.config.model:
            derived["atomic_energy_shifts"] = shifts
        if "atomic_energy_scales" not in self.config.model:
            derived["atomic_energy_scales"] = [scale if scale > 0 else 1.0] * len(base.elements)
        if "avg_num_neighbors" not in self.config.model:
            derived["avg_num_neighbors"] = neighbours if neighbours > 0 else 1.0
        return dataclasses.replace(base, **derived), dataset

    # ----------------------------------------------------------------------------------------------- state
    def _state(self) -> Dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "shuffle": self.shuffle_generator.get_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "ema_state": self.ema.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "epochs_without_improvement": self.epochs_without_improvement,
            "rng_state": rng,
            "history": self.history,
            "train_config": self.config.to_dict(),
            "split": self.split,
            "data_fingerprint": self.data_fingerprint,
            "statistics": self.statistics,
        }

    def save(self, path: str) -> None:
        """Write a checkpoint with everything needed to resume exactly (atomic; ``weights_only``-loadable)."""
        save_checkpoint(self.model, path, self._state())

    def _restore(self, checkpoint: Dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["model_state"])
        self.ema.load_state_dict(checkpoint["ema"], checkpoint["ema_state"])
        self.optimizer.load_state_dict(checkpoint["optimizer_state"])
        self.scheduler.load_state_dict(checkpoint["scheduler_state"])
        self.epoch = int(checkpoint["epoch"])
        self.best_metric = float(checkpoint["best_metric"])
        self.best_epoch = int(checkpoint["best_epoch"])
        self.epochs_without_improvement = int(checkpoint["epochs_without_improvement"])
        self.history = list(checkpoint["history"])
        rng = checkpoint["rng_state"]
        torch.set_rng_state(rng["torch"])
        self.shuffle_generator.set_state(rng["shuffle"])
        if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])

    # ----------------------------------------------------------------------------------------------- loop
    @property
    def finished(self) -> bool:
        """True after ``max_epochs`` epochs or when early stopping has triggered."""
        patience = self.config.patience
        return self.epoch >= self.config.max_epochs or (
            patience is not None and self.epochs_without_improvement >= patience
        )

    def _metrics(self) -> ErrorMetrics:
        return ErrorMetrics(self.model_config.elements, self.config.energy_weight, self.config.force_weight)

    def _head_metrics(self) -> PropertyMetrics:
        return PropertyMetrics(self.labelled_heads, self.head_weights)

    def _merge(self, result: Dict[str, Any], head_metrics: PropertyMetrics) -> Dict[str, Any]:
        """Energy/force metrics plus the heads' errors, with the heads' loss terms added to ``loss``."""
        if not self.labelled_heads or result.get("num_frames", 0) == 0:
            return result
        heads = head_metrics.compute()
        result["loss"] = result["loss"] + heads.pop("loss")
        result.update(heads)
        return result

    def train_one_epoch(self) -> Dict[str, Any]:
        """One pass over the shuffled training split; returns the running training metrics of the epoch."""
        from tqdm.auto import tqdm

        config = self.config
        self.model.train()
        metrics = self._metrics()
        head_metrics = self._head_metrics()
        graphs = self.graphs["train"]
        show = config.progress and self.distributed.is_main
        bar = tqdm(
            total=num_batches(len(graphs), config.batch_size),
            desc=f"epoch {self.epoch + 1}/{config.max_epochs}",
            disable=not show,
            leave=False,
            dynamic_ncols=True,
        )
        if self.distributed.enabled:
            batches = self._my_parts_of_global_batches(graphs)
        else:
            batches = iterate_batches(graphs, config.batch_size, shuffle=True, generator=self.shuffle_generator)
        with bar:
            for batch in batches:
                self.optimizer.zero_grad(set_to_none=True)
                if self.distributed.enabled:
                    self._backward_share(batch, metrics, head_metrics)
                    self.distributed.reduce_gradients_(list(self.model.parameters()))
                else:
                    self._backward(batch, metrics, head_metrics)
                if config.clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.clip_grad_norm)
                self.optimizer.step()
                self.ema.update(self.model)
                if show:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.running().items()}, refresh=False)
                bar.update(1)
        self._sum_over_processes(metrics, head_metrics)
        result = self._merge(metrics.compute(per_element=False), head_metrics)
        if not math.isfinite(result["loss"]):
            raise FloatingPointError(
                f"training loss is {result['loss']} in epoch {self.epoch + 1}; lower lr or check the data"
            )
        return result

    def _backward(self, batch, metrics: ErrorMetrics, head_metrics: PropertyMetrics,
                  counts: Optional[List[float]] = None) -> None:
        """Back-propagate the loss of ``batch`` and add the batch to the epoch's metrics.

        ``counts``: None for a whole batch (one process); with several processes, the global batch's frames,
        force components and labelled head components, which normalise this process's share of the loss."""
        config = self.config
        frames, components = (None, None) if counts is None else (counts[0], counts[1])
        if self.labelled_heads:
            energy, forces, outputs = predict_properties(self.model, batch, create_graph=True)
            loss = weighted_loss(energy, forces, batch, config.energy_weight, config.force_weight, frames, components)
            head_counts = None if counts is None else {h: max(c, 1.0) for h, c in zip(self.labelled_heads, counts[2:])}
            loss = loss + property_loss(outputs, batch, self.head_weights, head_counts)
            head_metrics.update(outputs, batch)
        else:
            energy, forces = predict(self.model, batch, create_graph=True)  # [B] eV, [N, 3] eV/Å
            loss = weighted_loss(energy, forces, batch, config.energy_weight, config.force_weight, frames, components)
        loss.backward()
        metrics.update(energy, forces, batch)

    def _my_parts_of_global_batches(self, graphs):
        """This process's contiguous part (a Batch, or ``None`` when empty) of each global batch, in the shuffled
        order every process draws alike (the same draw as :func:`~equiforce.data.iterate_batches`)."""
        size = self.config.batch_size
        order = torch.randperm(len(graphs), generator=self.shuffle_generator).tolist()
        for start in range(0, len(order), size):
            chosen = order[start : start + size]
            mine = chosen[self.distributed.shard(len(chosen))]
            yield collate([graphs[i] for i in mine]) if mine else None

    def _backward_share(self, batch, metrics: ErrorMetrics, head_metrics: PropertyMetrics) -> None:
        """Back-propagate this process's share of the global-batch loss: its sums divided by the global counts of
        frames, force components and labelled head components (all-reduced), so that the processes' gradients add
        up to the gradient of the whole batch. A process without frames takes part in the counts only."""
        heads = self.labelled_heads
        if batch is None:
            local = [0.0, 0.0] + [0.0] * len(heads)
        else:
            labelled = labelled_components(batch, heads)
            local = [float(batch.num_graphs), float(3 * batch.positions.shape[0])] + [float(labelled[h]) for h in heads]
        counts = global_counts(local, self.distributed, self.device)  # frames, force components, head components
        if batch is not None:
            self._backward(batch, metrics, head_metrics, counts)

    def _sum_over_processes(self, metrics: ErrorMetrics, head_metrics: PropertyMetrics) -> None:
        """Replace each process's metric sums by their sums over the processes (one all-reduce)."""
        if not self.distributed.enabled:
            return
        errors = metrics.to_tensor(self.device)  # [3 S + 3]
        packed = torch.cat([errors, head_metrics.to_tensor().to(self.device)])
        self.distributed.all_reduce_(packed)
        metrics.load_tensor(packed[: errors.shape[0]])
        head_metrics.load_tensor(packed[errors.shape[0] :])

    def evaluate(self, model: torch.nn.Module, graphs) -> Optional[Dict[str, Any]]:
        """Errors of ``model`` on ``graphs`` (``None`` for no graphs): see :meth:`ErrorMetrics.compute`.

        With several processes each evaluates a contiguous part of ``graphs`` and the sums are all-reduced, so
        every process returns the errors on all of ``graphs``.
        """
        if not graphs:
            return None
        model.eval()
        metrics = self._metrics()
        head_metrics = self._head_metrics()
        if self.distributed.enabled:
            part = self.distributed.shard(len(graphs))
            graphs = [graphs[i] for i in range(part.start, part.stop)]
        for batch in iterate_batches(graphs, self.config.batch_size) if graphs else ():
            if self.labelled_heads:
                energy, forces, outputs = predict_properties(model, batch, create_graph=False)
                head_metrics.update(outputs, batch)
            else:
                energy, forces = predict(model, batch, create_graph=False)
            metrics.update(energy, forces, batch)
        self._sum_over_processes(metrics, head_metrics)
        return self._merge(metrics.compute(), head_metrics)

    def run_epoch(self) -> Dict[str, Any]:
        """Train one epoch, validate the averaged weights, step the schedule, save checkpoints and the log."""
        config = self.config
        start = time.perf_counter()
        lr = float(self.optimizer.param_groups[0]["lr"])
        train = self.train_one_epoch()
        validation = self.evaluate(self.ema.model, self.graphs["validation"])
        monitor = validation["loss"] if validation is not None else train["loss"]
        if config.schedule == "plateau":
            self.scheduler.step(monitor)
        else:
            self.scheduler.step()
        self.epoch += 1
        improved = monitor < self.best_metric
        if improved:
            self.best_metric, self.best_epoch, self.epochs_without_improvement = monitor, self.epoch, 0
        else:
            self.epochs_without_improvement += 1
        row = {
            "epoch": self.epoch,
            "lr": lr,
            "train_loss": train["loss"],
            "train_energy_mae": train["energy_mae"],
            "train_force_mae": train["force_mae"],
        }
        for key in ("loss", "energy_mae", "energy_rmse", "force_mae", "force_rmse"):
            row[f"val_{key}"] = validation[key] if validation is not None else None
        for head in self.labelled_heads:  # e·Å, Å³; None where the split has no labelled frame
            row[f"train_{head}_mae"] = train.get(f"{head}_mae")
            row[f"val_{head}_mae"] = validation.get(f"{head}_mae") if validation is not None else None
            row[f"val_{head}_rmse"] = validation.get(f"{head}_rmse") if validation is not None else None
        row.update({"best": improved, "seconds": time.perf_counter() - start})
        self.history.append(row)
        if not self.distributed.is_main:  # the other processes keep the same state but write and print nothing
            return row
        if improved:
            self.save(self._path(BEST))
        self.save(self._path(LAST))
        write_history(self.output_dir, self.history)
        if config.progress:
            from tqdm.auto import tqdm

            shown = validation if validation is not None else train
            tqdm.write(
                f"epoch {self.epoch}/{config.max_epochs}  lr {lr:.2e}  train loss {train['loss']:.4g}  "
                f"{'val' if validation is not None else 'train'} loss {monitor:.4g}  "
                f"E MAE {shown['energy_mae']:.3g} meV/atom  F MAE {shown['force_mae']:.3g} meV/Å"
                f"{'  *' if improved else ''}"
            )
        return row

    def fit(self, stop_after: Optional[int] = None) -> Optional[Dict[str, Any]]:
        """Train until :attr:`finished`, then :meth:`finish`; returns the final metrics.

        ``stop_after``: return ``None`` after that many epochs of this call if training is not finished by then
        (what an interruption would do; continue with a new ``Trainer`` and ``resume``).
        """
        done = 0
        while not self.finished:
            if stop_after is not None and done >= stop_after:
                return None
            self.run_epoch()
            done += 1
        return self.finish()

    def load_best(self) -> EquivariantPotential:
        """Load the averaged weights of ``best.ckpt`` into the averaged model and return it.

        Used at the end of training (reusing the averaged model avoids building another one); the in-memory
        average no longer follows the training afterwards, so resume from ``last.ckpt`` to train further. With
        several processes rank 0 reads the file and sends the weights to the others.
        """
        if self.distributed.is_main:
            payload = load_checkpoint(self._path(BEST))
            self.ema.model.load_state_dict(payload["ema_state"])
        self.distributed.broadcast_module_(self.ema.model)
        return self.ema.model

    def finish(self) -> Dict[str, Any]:
        """Evaluate the best averaged weights on the validation and test splits, write ``metrics.json``, export."""
        from ..export import export_model

        main = self.distributed.is_main
        if self.best_epoch == 0 and main:  # no epoch was trained (max_epochs 0): the initial weights are the best
            self.save(self._path(BEST))
        model = self.load_best()
        units = dict(METRIC_UNITS)
        units.update({head: LABELLED_HEADS[head] for head in self.labelled_heads})
        results: Dict[str, Any] = {
            "units": units,
            "model_units": MODEL_UNITS,
            "epochs": self.epoch,
            "best_epoch": self.best_epoch,
            "best_validation_loss": self.best_metric,
            "stopped_early": self.epoch < self.config.max_epochs,
            "num_frames": {name: len(indices) for name, indices in self.split.items()},
            "statistics": self.statistics,
            "validation": self.evaluate(model, self.graphs["validation"]),
            "test": self.evaluate(model, self.graphs["test"]),
            "model_config": self.model_config.to_dict(),
            "train_config": self.config.to_dict(),
            "export": None,
        }
        if self.config.export:
            if main:
                export_model(model, self.config.export, dtype=self.config.export_dtype)
            results["export"] = {"path": self.config.export, "dtype": self.config.export_dtype}
        if main:
            write_json(self._path(METRICS), results)
        self.distributed.barrier()  # every process returns once the files are written
        return results


def train(config: TrainConfig, resume: Optional[bool] = None) -> Dict[str, Any]:
    """Run (or resume, see :class:`Trainer`) a training and return the final metrics (also in ``metrics.json``).

    Under ``torchrun`` every process calls this and gets the same metrics; the process group the trainer
    initialised is destroyed at the end.
    """
    trainer = Trainer(config, resume)
    try:
        return trainer.fit()
    finally:
        trainer.distributed.close()
