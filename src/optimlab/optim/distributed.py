"""Distributed tensors (DTensor, as FSDP2's ``fully_shard`` makes its parameters) for the step.

An elementwise rule treats every element on its own, so stepping a sharded parameter is stepping
each rank's local shard with the local shards of its gradient and state: what one process would do
to the whole tensor. Only decisions that look at a whole group of parameters — is any gradient
non-finite? — have to be taken together: :func:`all_ranks_agree` reduces such a flag over every
process that holds a shard.

Matrix rules (Muon) need whole matrices: :mod:`optimlab.optim.engine.spread` steps each sharded
matrix on one rank, after :func:`all_ranks_same` has checked that every rank lists the same ones.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor


def _dtensor_class() -> type | None:
    """``DTensor``, once something has imported it: a DTensor cannot exist before its module is
    loaded, and importing it here would cost every ``import optimlab.optim`` half a second."""
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None) if module is not None else None


def is_distributed(tensor: Any) -> bool:
    """Whether ``tensor`` is a DTensor."""
    cls = _dtensor_class()
    return cls is not None and isinstance(tensor, cls)


def local(tensor: Tensor) -> Tensor:
    """The tensor this rank holds: a DTensor's local shard (its own storage, not a copy), or the
    tensor itself."""
    if is_distributed(tensor):
        return tensor._local_tensor  # type: ignore[attr-defined]
    return tensor


def same_layout(tensor: Tensor, other: Tensor) -> bool:
    """Whether two tensors are distributed alike (both plain, or DTensors with the same mesh and
    placements), so that their local tensors hold the same elements."""
    if not is_distributed(tensor):
        return not is_distributed(other)
    return (
        is_distributed(other)
        and other.device_mesh == tensor.device_mesh
        and tuple(other.placements) == tuple(tensor.placements)
        and other.shape == tensor.shape
    )


def all_ranks_agree(flag: bool, tensors: Iterable[Tensor]) -> bool:
    """``flag`` and-ed over every rank of the meshes that ``tensors`` (some of which may be DTensors)
    are spread over; ``flag`` itself when none is a DTensor. Every rank must call it alike."""
    meshes: dict[int, tuple[Any, torch.device]] = {}
    for tensor in tensors:
        if is_distributed(tensor) and id(tensor.device_mesh) not in meshes:
            meshes[id(tensor.device_mesh)] = (tensor.device_mesh, local(tensor).device)
    if not meshes:
        return flag
    import torch.distributed as dist

    for mesh, device in meshes.values():  # the flag lives where the collective backend wants it
        value = torch.tensor(1 if flag else 0, dtype=torch.int32, device=device)
        for group in mesh.get_all_groups():
            dist.all_reduce(value, op=dist.ReduceOp.MIN, group=group)
        flag = bool(value.item())
    return flag


def all_ranks_same(value: int, tensors: Iterable[Tensor]) -> bool:
    """Whether every rank of the meshes that ``tensors`` are spread over passed the same ``value``
    (an int64); ``True`` when none is a DTensor. One all-reduce per mesh dimension, of the largest
    value and of the largest negated one: every rank learns the same answer, so that ranks which
    would disagree in a collective can all stop instead of waiting for each other."""
    meshes: dict[int, tuple[Any, torch.device]] = {}
    for tensor in tensors:
        if is_distributed(tensor) and id(tensor.device_mesh) not in meshes:
            meshes[id(tensor.device_mesh)] = (tensor.device_mesh, local(tensor).device)
    if not meshes:
        return True
    import torch.distributed as dist

    same = True
    for mesh, device in meshes.values():
        extremes = torch.tensor([value, -value], dtype=torch.int64, device=device)
        for group in mesh.get_all_groups():
            dist.all_reduce(extremes, op=dist.ReduceOp.MAX, group=group)
        largest, smallest = extremes.tolist()
        same = same and largest == -smallest
    return same
