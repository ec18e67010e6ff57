"""Training on several processes with ``torch.distributed`` (launched by ``torchrun``): which process this is,
each process's part of a global batch, and the sums over processes of gradients, counts and metrics.

Gradients are summed by one all-reduce of a flat buffer after ``loss.backward()`` rather than by wrapping the
model in :class:`torch.nn.parallel.DistributedDataParallel`:

* each process back-propagates its frames' share of the global-batch loss (sums divided by global counts), so
  the SUM of the processes' gradients is the single-process gradient; DDP averages (divides by the number of
  processes), which would need the loss rescaled and adds a rounding step;
* the trainer calls ``batch_energy`` / ``batch_properties``, not ``forward``, so DDP's hooks would need a
  wrapper module, and property heads that get no loss in a step (weight 0, no labelled frame) would need
  ``find_unused_parameters``;
* a process whose share of a short last batch is empty runs no model at all and contributes zeros;
* forces come from ``torch.autograd.grad(create_graph=True)`` inside the loss. DDP does handle that (checked
  with gloo on 2 processes: a module whose ``forward`` returns the force loss, scaled by the number of processes,
  gave the one-process gradient of the whole batch to 6e-16 relative), since ``autograd.grad`` with respect to
  the positions does not fire DDP's gradient hooks; summing after ``loss.backward()`` needs no such reasoning.

The price is that communication does not overlap the backward pass; for models of this size (10⁴-10⁵ weights)
one all-reduce per step is small next to the force double-backward.
"""
import os
from dataclasses import dataclass
from typing import Iterable, List, Sequence

import torch
from torch import Tensor, nn


def _wants_cuda(device_name: str) -> bool:
    if device_name == "auto":
        return torch.cuda.is_available()
    return device_name.startswith("cuda")


@dataclass
class Distributed:
    """This process's place among the training processes (one process: rank 0 of 1, every method a no-op).

    Attributes
    ----------
    rank, world_size, local_rank
        As set by ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) or by the process group the caller
        initialised.
    owns_group
        True when :meth:`from_environment` initialised the process group (then :meth:`close` destroys it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @classmethod
    def from_environment(cls, device_name: str) -> "Distributed":
        """Join the training processes: use a process group the caller initialised, else initialise one when
        ``WORLD_SIZE`` > 1 (``torchrun``; backend ``nccl`` for a CUDA ``device_name``, ``gloo`` for the CPU),
        else one process."""
        import torch.distributed as dist

        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), local_rank, owns_group=False)
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        if not dist.is_available():
            raise RuntimeError(f"WORLD_SIZE={world_size} but this torch build has no torch.distributed")
        cuda = _wants_cuda(device_name)
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, owns_group=True)

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device of this process: ``cuda:LOCAL_RANK`` for a CUDA device when there are several processes."""
        if self.enabled and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def shard(self, num_items: int) -> slice:
        """This process's contiguous part of ``num_items`` items (sizes differ by at most one; may be empty)."""
        base, extra = divmod(num_items, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def all_reduce_(self, tensor: Tensor) -> Tensor:
        """Sum ``tensor`` over the processes, in place (every process gets the same sum); returns it."""
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def reduce_gradients_(self, parameters: Sequence[nn.Parameter]) -> None:
        """Replace each parameter's gradient by its sum over the processes (one all-reduce of a flat buffer).

        A parameter without a gradient counts as zero; it keeps ``grad = None`` only when no process gave it one,
        as in a single process (so the optimiser skips it there too).
        """
        if not self.enabled:
            return
        parameters = list(parameters)
        reference = parameters[0]
        pieces: List[Tensor] = []
        for p in parameters:
            pieces.append(p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1))
        flags = torch.tensor([p.grad is not None for p in parameters], dtype=reference.dtype, device=reference.device)
        flat = self.all_reduce_(torch.cat(pieces + [flags]))  # [num_weights + num_parameters]
        offset = 0
        for k, p in enumerate(parameters):
            n = p.numel()
            if flat[-len(parameters) + k] > 0:
                p.grad = flat[offset : offset + n].view_as(p).clone()
            else:
                p.grad = None
            offset += n

    def broadcast_module_(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers into ``module`` on every process."""
        if not self.enabled:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)

    def check_same(self, what: str, value: object) -> None:
        """Fail on every process, naming the ranks, when ``value`` differs between processes."""
        if not self.enabled:
            return
        import torch.distributed as dist

        values: List[object] = [None] * self.world_size
        dist.all_gather_object(values, value)
        if any(v != values[0] for v in values):
            listing = ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(values))
            raise RuntimeError(
                f"the training processes disagree on {what} ({listing}); every rank must read the same data and "
                "the same output_dir (a file system all of them see)"
            )

    def barrier(self) -> None:
        """Wait for every process."""
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """Destroy the process group if :meth:`from_environment` created it."""
        if self.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.owns_group = False


def global_counts(parts: Iterable[float], distributed: Distributed, device: torch.device) -> List[float]:
    """Sum a few local counts over the processes (one small all-reduce, float64); the sums as Python floats."""
    local = torch.tensor(list(parts), dtype=torch.float64, device=device)  # [K]
    return [float(v) for v in distributed.all_reduce_(local).cpu()]
