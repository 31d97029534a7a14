"""Data-parallel synchronisation for :func:`kexue.mtl.mtl_backward` (issue 20; spec 07 §3.2).

Gradient aggregators are non-linear in the per-task gradients, so averaging the *final* update
over ranks (what ``DistributedDataParallel`` does) is not the update of the union batch. The
union-batch update needs the union-batch inputs of the aggregator: every rank all-reduces what
the aggregator consumes (loss values, per-task shared gradients or the feature Gram matrix)
*before* the direction is solved, so all ranks solve the same problem and write the same
``.grad``. Only ``torch.distributed`` collectives are used (one ``all_reduce`` per dtype and
device of a flat buffer).

Union-batch equivalence assumes every rank holds the same number of samples and every task loss
is a mean over the rank's samples (the union loss is then the mean of the rank losses), as
``DistributedDataParallel``'s gradient averaging does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

__all__ = ["GradientSync", "resolve_sync"]


class GradientSync:
    """All-reduces tensors over ``group`` (world size ``world_size``) and counts the bytes."""

    def __init__(self, group: dist.ProcessGroup, world_size: int) -> None:
        self.group = group
        self.world_size = world_size
        self.bytes = 0

    def sum(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Sum over ranks of every tensor (new tensors; one collective per dtype and device)."""
        return self._reduce(tensors, None)

    def mean(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Mean over ranks of every tensor."""
        return self._reduce(tensors, self.world_size)

    def _reduce(self, tensors: Sequence[torch.Tensor], divisor: int | None) -> list[torch.Tensor]:
        out: list[torch.Tensor] = [t.detach() for t in tensors]
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for index, tensor in enumerate(out):
            groups.setdefault((tensor.device, tensor.dtype), []).append(index)
        for indices in groups.values():
            flat = torch.cat([out[i].reshape(-1) for i in indices])  # a copy: inputs untouched
            dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
            self.bytes += flat.numel() * flat.element_size()
            if divisor is not None:
                flat.div_(divisor)
            offset = 0
            for i in indices:
                size = out[i].numel()
                out[i] = flat[offset : offset + size].view_as(out[i])
                offset += size
        return out

    def check_agree(self, device: torch.device, **counts: int) -> None:
        """Raise ValueError on every rank if the ranks disagree on any of ``counts`` (a mismatch
        would otherwise deadlock or garble the next collective). ``device``: where the tensor
        goes (the losses' device: NCCL reduces CUDA tensors only)."""
        names = list(counts)
        local = torch.tensor([counts[n] for n in names], dtype=torch.int64, device=device)
        both = torch.cat([local, -local])
        dist.all_reduce(both, op=dist.ReduceOp.MAX, group=self.group)
        self.bytes += both.numel() * both.element_size()
        high, low = both[: len(names)], -both[len(names) :]
        for k, name in enumerate(names):
            if int(high[k]) != int(low[k]):
                raise ValueError(
                    f"the ranks disagree on {name} (this rank: {counts[name]}, range over the "
                    f"{self.world_size} ranks: {int(low[k])}..{int(high[k])}): every rank must "
                    "call mtl_backward with the same tasks and parameters"
                )


def resolve_sync(sync: object, process_group: object) -> GradientSync | None:
    """The synchronisation :func:`kexue.mtl.mtl_backward` uses, or None (rank-local).

    ``sync=None`` (default): on when ``torch.distributed`` is initialised and the group
    (``process_group``, default the world) has more than one rank; ``True``: on (error if
    ``torch.distributed`` is not initialised); ``False``: off.
    """
    if sync is not None and not isinstance(sync, bool):
        raise TypeError(f"sync must be None, True or False, got {type(sync).__name__}")
    if process_group is not None and not (
        dist.is_available() and isinstance(process_group, dist.ProcessGroup)
    ):
        raise TypeError(
            f"process_group must be a torch.distributed.ProcessGroup or None, got "
            f"{type(process_group).__name__}"
        )
    if sync is False:
        if process_group is not None:
            raise ValueError("process_group was given but sync=False: drop one of them")
        return None
    if not (dist.is_available() and dist.is_initialized()):
        if sync is True or process_group is not None:
            raise ValueError(
                "sync=True/process_group need an initialised torch.distributed process group "
                "(call torch.distributed.init_process_group first), or pass sync=False"
            )
        return None
    group = process_group if process_group is not None else dist.group.WORLD
    assert isinstance(group, dist.ProcessGroup)
    world_size = dist.get_world_size(group)
    if world_size == 1 and sync is None:
        return None
    return GradientSync(group, world_size)
