"""Matrix rules on sharded parameters (FSDP2): each matrix stepped whole by one rank, the matrices
spread over the ranks.

A :attr:`~optimlab.optim.base.RuleOptimizer.matrix` rule (Muon) needs a whole matrix: Newton–Schulz
of a row shard is not a shard of Newton–Schulz of the matrix. For the DTensor parameters of a param
group that FSDP2 shards along one dimension of a one-dimensional mesh, the eager engine therefore:

1. lists the matrices to step, in the group's order, identically on every rank, and checks that
   every rank listed the same ones (one small all-reduce of a fingerprint: ranks that disagree —
   a gradient present on one rank only — all raise the same error instead of waiting for each
   other in a collective);
2. gives each matrix an owner rank (:func:`matrix_owners`: over all the sharded matrices of the
   optimizer, largest first to the least loaded rank, the load of an (m, n) matrix counted as
   m·n·min(m, n), the work of its matrix products — deterministic, the same on every rank);
3. gathers to its owner, in one ``all_to_all`` over the mesh's process group, each matrix's shards
   of the parameter, the gradient and the state;
4. runs the rule on the owner on the whole plain tensors — exactly one process's call, with
   ``batch_matrices`` stacking the owner's same-shape matrices (a shape stepped one at a time in one
   process, alone in its shape there, is one at a time here too, so the products are the same);
5. sends each rank its shards of the new parameter and state (a second ``all_to_all``), which it
   copies into the parameter's and the state's own local storage: the state stays sharded like the
   parameter, as distributed checkpoints expect. Each owner's message starts with a status: if the
   rule failed on some owner, every rank raises and none writes anything; if it created state (a
   momentum buffer on its first step), its keys are announced and its shards follow.

Why the whole rule on the owner, rather than splitting it into a shardable part (Muon's momentum
update, elementwise) and a whole-matrix part (Newton–Schulz of the update): the rule stays one
opaque pure function, any matrix rule is spread without declaring more (a rule whose whole-matrix
part also reads the parameter or the state is spread the same way), and the owner's call is
literally the one-process call, so the numbers are one process's bit for bit by construction. The
price is traffic: the owner receives the parameter, the gradient and the state of its matrices (three
matrices' worth, not one) and sends back the parameter and the state (two, not one). On W ranks each
receives about 5/W·(W−1)/W of the matrices' bytes, against (W−1)/W for an all-gather of every update
(the whole matrix on every rank): more on 2 to 4 ranks, less from 6 on — while each rank's matrix
products drop to about 1/W (``benchmarks/muon_fsdp2_spread.py``). During the step each rank holds
the whole tensors of its own matrices (about as much as its shards of all of them) and the exchange's
byte buffers.

A DTensor this cannot take — a mesh of more than one dimension (HSDP, tensor parallelism), a
placement other than ``Shard`` (``Replicate``, ``_StridedShard``), a gradient or state laid out
differently, state that is not shaped like the parameter, rule statistics, a step autograd records —
and every step with stochastically rounded storage (``state_dtype``, ``stochastic_rounding``: its
random bits are drawn parameter by parameter) is left to the per-parameter path, where the rule
sees the DTensors themselves (Muon then orthogonalizes the whole matrix on every rank: the same
numbers, not spread).
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from optimlab.optim.distributed import all_ranks_same, is_distributed, local, same_layout
from optimlab.optim.engine.stacks import rule_on_stack

if TYPE_CHECKING:
    from optimlab.optim.base import RuleOptimizer

#: every piece of a byte buffer starts at a multiple of this, so that it can be viewed as any dtype
_ALIGN = 16

Bucket = tuple[Any, ...]


def shard_sizes(length: int, world: int) -> tuple[int, ...]:
    """How DTensor's ``Shard`` splits ``length`` entries over ``world`` ranks (``torch.chunk``'s
    rule: ⌈length/world⌉ each, the last ones shorter or empty)."""
    chunk = -(-length // world)
    return tuple(max(0, min(chunk, length - chunk * rank)) for rank in range(world))


def matrix_work(shape: Sequence[int]) -> int:
    """The load of a matrix for :func:`assign_owners`: m·n·min(m, n) for its (m, n) view (first
    dimension by the rest; a convolution's weight as Muon's ``flatten`` sees it), the order of the
    work of its matrix products."""
    rows = shape[0] if shape else 1
    numel = 1
    for size in shape:
        numel *= size
    cols = numel // rows if rows else 0
    return numel * min(rows, cols)


def assign_owners(loads: Sequence[int], world: int) -> list[int]:
    """An owner rank for each of ``loads``, balancing the sums: largest load first (ties: earlier
    first) to the rank with the least load so far (ties: the lowest rank) — the LPT rule, within
    4/3 of the best balance. Deterministic, so every rank computes the same owners."""
    if world < 1:
        raise ValueError(f"world must be at least 1, got {world}")
    owners = [0] * len(loads)
    totals = [(0, rank) for rank in range(world)]  # a heap of (load so far, rank)
    for index in sorted(range(len(loads)), key=lambda i: (-loads[i], i)):
        total, rank = heapq.heappop(totals)
        owners[index] = rank
        heapq.heappush(totals, (total + loads[index], rank))
    return owners


def matrix_owners(optimizer: RuleOptimizer, mesh: Any) -> dict[int, int]:
    """The owner rank of each sharded matrix on ``mesh`` (by ``id``): :func:`assign_owners` over all
    of them, in every param group the matrix rule steps — so that the whole optimizer is balanced,
    not each group on its own, and a matrix keeps its owner whether or not the others have a gradient
    this step. It depends only on the param groups, which are the same on every rank."""
    matrices = [
        param
        for group in optimizer.param_groups
        if optimizer.steps_matrices(group)
        for param in group["params"]
        if is_distributed(param) and param.device_mesh is mesh and _sharded_dim(param) is not None  # type: ignore[attr-defined]
    ]
    owners = assign_owners([matrix_work(param.shape) for param in matrices], mesh.size())
    return {id(param): owner for param, owner in zip(matrices, owners, strict=True)}


@dataclass(frozen=True)
class _Matrix:
    """One matrix of the step: where it is in the group's list, and how its tensors are laid out."""

    index: int
    shape: tuple[int, ...]
    dim: int  # the sharded dimension
    sizes: tuple[int, ...]  # its length on each rank
    keys: tuple[str, ...]  # the state entries moved with it (sorted)
    dtypes: tuple[torch.dtype, ...]  # the parameter's, the gradient's, then the state's, in ``keys`` order
    bucket: Bucket  # same-shape matrices stacked together in one process share it

    @property
    def written(self) -> tuple[torch.dtype, ...]:
        """The dtypes of what the rule writes: the parameter's, then the state's."""
        return (self.dtypes[0], *self.dtypes[2:])

    def local_shape(self, rank: int) -> tuple[int, ...]:
        return (*self.shape[: self.dim], self.sizes[rank], *self.shape[self.dim + 1 :])

    def nbytes(self, rank: int, dtype: torch.dtype) -> int:
        numel = 1
        for size in self.local_shape(rank):
            numel *= size
        return _aligned(numel * dtype.itemsize)


def _aligned(nbytes: int) -> int:
    return -(-nbytes // _ALIGN) * _ALIGN


def _sharded_dim(tensor: Tensor) -> int | None:
    """The dimension a DTensor is sharded along on a one-dimensional mesh, else ``None``."""
    from torch.distributed.tensor import Shard

    placements = tuple(tensor.placements)  # type: ignore[attr-defined]
    if tensor.device_mesh.ndim != 1 or len(placements) != 1 or type(placements[0]) is not Shard:  # type: ignore[attr-defined]
        return None
    return placements[0].dim % tensor.dim()


def _describe(
    optimizer: RuleOptimizer, index: int, param: Tensor, grad: Tensor, state: dict[str, Any], extra: dict
) -> _Matrix | None:
    """The matrix's layout if it can be spread (see the module's docstring), else ``None``."""
    if not is_distributed(param) or extra or torch.is_grad_enabled():
        return None
    dim = _sharded_dim(param)
    if dim is None or grad.is_sparse or param.is_complex():
        return None
    parameter_like = (
        isinstance(value, Tensor) and value.dim() > 0 and same_layout(param, value)
        for value in state.values()
    )
    if not same_layout(param, grad) or not all(parameter_like):
        return None
    world = param.device_mesh.size()  # type: ignore[attr-defined]
    sizes = shard_sizes(param.shape[dim], world)
    rank = param.device_mesh.get_local_rank()  # type: ignore[attr-defined]
    local_shape = (*param.shape[:dim], sizes[rank], *param.shape[dim + 1 :])
    if any(tuple(local(t).shape) != local_shape for t in (param, grad, *state.values())):
        return None  # not torch.chunk's split: this rank would send what the others do not expect
    keys = tuple(sorted(state))
    bucket = (tuple(param.shape), param.dtype, param.device, grad.dtype, keys)
    return _Matrix(
        index,
        tuple(param.shape),
        dim,
        sizes,
        keys,
        (param.dtype, grad.dtype, *(state[key].dtype for key in keys)),
        bucket,
    )


def _fingerprint(entries: list[tuple[Any, ...]]) -> int:
    """A 56-bit digest of what this rank is about to do (str, so no per-process hash seed)."""
    digest = hashlib.blake2b(repr(entries).encode(), digest_size=7).digest()
    return int.from_bytes(digest, "little")


def _to_bytes(tensor: Tensor) -> Tensor:
    flat = tensor.contiguous().view(-1).view(torch.uint8)
    padding = _aligned(flat.numel()) - flat.numel()
    return torch.nn.functional.pad(flat, (0, padding)) if padding else flat


def _from_bytes(buffer: Tensor, offset: int, dtype: torch.dtype, shape: tuple[int, ...]) -> Tensor:
    numel = 1
    for size in shape:
        numel *= size
    return buffer[offset : offset + numel * dtype.itemsize].view(dtype).view(shape)


def _exchange(send: list[list[Tensor]], receive_sizes: list[int], device: torch.device, group: Any) -> Tensor:
    """One ``all_to_all``: ``send[r]`` (byte pieces) to rank ``r``; returns what arrived, rank by rank
    (``receive_sizes[r]`` bytes from rank ``r``)."""
    import torch.distributed as dist

    pieces = [piece for to_rank in send for piece in to_rank]
    send_sizes = [sum(piece.numel() for piece in to_rank) for to_rank in send]
    buffer = torch.cat(pieces) if pieces else torch.empty(0, dtype=torch.uint8, device=device)
    received = torch.empty(sum(receive_sizes), dtype=torch.uint8, device=device)
    dist.all_to_all_single(received, buffer, receive_sizes, send_sizes, group=group)
    return received


def step_spread_matrices(
    optimizer: RuleOptimizer,
    group: dict[str, Any],
    params: list[Tensor],
    grads: list[Tensor],
    extras: list[dict[str, Any]],
    hyper: dict[str, Any],
) -> tuple[list[Tensor], list[Tensor], list[dict[str, Any]]]:
    """Step the group's sharded matrices, each whole on its owner rank (see the module's docstring).
    Every rank must call it for the group, with the parameters that have a gradient there. Returns
    the parameters left to the other paths (plain tensors, DTensors it cannot take), with their
    gradients and extra arguments."""
    meshes: dict[int, Any] = {}
    for param in group["params"]:
        if is_distributed(param):
            meshes.setdefault(id(param.device_mesh), param.device_mesh)  # type: ignore[attr-defined]
    if not meshes:
        return params, grads, extras
    owners = {mesh_id: matrix_owners(optimizer, mesh) for mesh_id, mesh in meshes.items()}
    in_group = {id(param): position for position, param in enumerate(group["params"])}
    plans: dict[int, list[_Matrix]] = {}
    described: list[tuple[Any, ...]] = []  # what this rank is about to do, parameters by their place
    rest: list[int] = []
    for index, (param, grad) in enumerate(zip(params, grads, strict=True)):
        state = {k: v for k, v in optimizer.ensure_state(param, group).items() if v is not None}
        matrix = _describe(optimizer, index, param, grad, state, extras[index])
        if matrix is None:
            rest.append(index)
            if is_distributed(param):  # its own collectives follow (the rule's DTensor ops)
                described.append((in_group[id(param)], "whole", tuple(param.shape)))
            continue
        mesh_id = id(param.device_mesh)  # type: ignore[attr-defined]
        plans.setdefault(mesh_id, []).append(matrix)
        dtypes = [str(dtype) for dtype in matrix.dtypes]
        owner = owners[mesh_id][id(param)]
        described.append((in_group[id(param)], owner, matrix.shape, matrix.dim, matrix.keys, dtypes))
    if not all_ranks_same(_fingerprint(described), group["params"]):
        raise RuntimeError(
            f"{type(optimizer).__name__}: the ranks disagree on the sharded parameters to step in a "
            "param group (a gradient present on some ranks only?); every rank of a DTensor's mesh "
            "must step the same ones. No parameter of the group was updated."
        )
    batched = optimizer.batches_matrices(group)
    for mesh_id, plan in plans.items():
        plan_owners = [owners[mesh_id][id(params[m.index])] for m in plan]
        _step_plan(optimizer, meshes[mesh_id], plan, plan_owners, params, grads, hyper, batched)
    return [params[i] for i in rest], [grads[i] for i in rest], [extras[i] for i in rest]


def _step_plan(
    optimizer: RuleOptimizer,
    mesh: Any,
    plan: list[_Matrix],
    owners: list[int],
    params: list[Tensor],
    grads: list[Tensor],
    hyper: dict[str, Any],
    batched: bool,
) -> None:
    """The matrices of ``plan`` (all on ``mesh``, owned by ``owners``): gathered to their owners,
    stepped, scattered back."""
    world, me = mesh.size(), mesh.get_local_rank()
    process_group = mesh.get_group()
    owned_by = [[m for m, owner in zip(plan, owners, strict=True) if owner == rank] for rank in range(world)]
    mine = owned_by[me]
    device = local(params[plan[0].index]).device

    def read(matrix: _Matrix) -> list[Tensor]:  # in the order of matrix.dtypes
        param = params[matrix.index]
        return [param, grads[matrix.index], *(optimizer.state[param][key] for key in matrix.keys)]

    # 1. gather: every rank sends each matrix's owner its shards of the parameter, gradient and state
    send = [[_to_bytes(local(t)) for m in owned_by[owner] for t in read(m)] for owner in range(world)]
    sizes = [sum(m.nbytes(source, d) for m in mine for d in m.dtypes) for source in range(world)]
    received = _exchange(send, sizes, device, process_group)
    pieces: dict[int, list[list[Tensor]]] = {m.index: [[] for _ in m.dtypes] for m in mine}
    offset = 0
    for source in range(world):
        for matrix in mine:
            for slot, dtype in enumerate(matrix.dtypes):
                shard = _from_bytes(received, offset, dtype, matrix.local_shape(source))
                pieces[matrix.index][slot].append(shard)
                offset += matrix.nbytes(source, dtype)

    # 2. the owner runs the rule on its whole matrices; should it fail, every rank learns so in step 3
    failure: Exception | None = None
    created: dict[int, dict[str, Tensor]] = {}
    try:
        results, created = _run_rule(optimizer, plan, mine, pieces, hyper, batched)
    except Exception as error:  # re-raised below, once the other ranks have been told
        failure, results = error, {}

    # 3. scatter: the owner sends every rank its status, then its shards of the new parameter and state
    code = _FAILED if failure is not None else _CREATED if created else _STEPPED
    status = _to_bytes(torch.tensor([code], dtype=torch.int64, device=device))
    send = []
    for target in range(world):
        to_target = [status]
        for m in mine:
            if failure is not None:
                to_target.extend(
                    torch.zeros(m.nbytes(target, d), dtype=torch.uint8, device=device) for d in m.written
                )
                continue
            to_target.extend(_to_bytes(_shard(value, m, target)) for value in results[m.index])
        send.append(to_target)
    sizes = [
        _ALIGN + sum(m.nbytes(me, d) for m in owned_by[source] for d in m.written) for source in range(world)
    ]
    received = _exchange(send, sizes, device, process_group)
    starts = [sum(sizes[:source]) for source in range(world)]
    codes = [int(_from_bytes(received, starts[r], torch.int64, (1,)).item()) for r in range(world)]
    if failure is not None:
        raise failure
    if _FAILED in codes:
        raise RuntimeError(
            f"{type(optimizer).__name__}: rank {codes.index(_FAILED)} could not step the matrices it owns "
            "(see its error); no parameter of the group was updated"
        )
    for source in range(world):
        offset = starts[source] + _ALIGN
        for matrix in owned_by[source]:
            param = params[matrix.index]
            targets = [param, *(optimizer.state[param][key] for key in matrix.keys)]
            for target, dtype in zip(targets, matrix.written, strict=True):
                local(target).copy_(_from_bytes(received, offset, dtype, matrix.local_shape(me)))
                offset += matrix.nbytes(me, dtype)
            torch.autograd.graph.increment_version(param)  # the DTensor changed with its shard
    if _CREATED in codes:
        _scatter_created(optimizer, owned_by, me, created, params, device, process_group)


#: an owner's status, heading what it scatters: stepped; failed (every rank raises, none writes);
#: stepped, and the rule created state (SGD-like momentum on its first step), which follows
_STEPPED, _FAILED, _CREATED = 0, 1, 2


def _shard(value: Tensor, matrix: _Matrix, rank: int) -> Tensor:
    """``rank``'s shard of a whole tensor laid out as ``matrix``."""
    return value.narrow(matrix.dim, sum(matrix.sizes[:rank]), matrix.sizes[rank])


def _scatter_created(
    optimizer: RuleOptimizer,
    owned_by: list[list[_Matrix]],
    me: int,
    created: dict[int, dict[str, Tensor]],
    params: list[Tensor],
    device: torch.device,
    process_group: Any,
) -> None:
    """State the rule created on the owners: its keys announced to every rank, then each rank's
    shards sent to it, into new tensors laid out like the parameter (as one process creates them)."""
    import torch.distributed as dist

    world = len(owned_by)
    announced: list[Any] = [None] * world
    dist.all_gather_object(
        announced, {index: sorted(values) for index, values in created.items()}, process_group
    )
    send = [
        [
            _to_bytes(_shard(created[m.index][key], m, target))
            for m in owned_by[me]
            for key in sorted(created.get(m.index, {}))
        ]
        for target in range(world)
    ]
    sizes = [
        sum(m.nbytes(me, m.dtypes[0]) for m in owned_by[source] for _ in announced[source].get(m.index, ()))
        for source in range(world)
    ]
    received = _exchange(send, sizes, device, process_group)
    offset = 0
    for source in range(world):
        for matrix in owned_by[source]:
            param = params[matrix.index]
            for key in announced[source].get(matrix.index, ()):
                holder = torch.empty_like(param, memory_format=torch.preserve_format)
                local(holder).copy_(_from_bytes(received, offset, matrix.dtypes[0], matrix.local_shape(me)))
                optimizer.state[param][key] = holder
                offset += matrix.nbytes(me, matrix.dtypes[0])


def _run_rule(
    optimizer: RuleOptimizer,
    plan: list[_Matrix],
    mine: list[_Matrix],
    pieces: dict[int, list[list[Tensor]]],
    hyper: dict[str, Any],
    batched: bool,
) -> tuple[dict[int, list[Tensor]], dict[int, dict[str, Tensor]]]:
    """The rule on the whole matrices this rank owns (``pieces``: each one's shards, by slot), same-shape
    ones stacked where one process would stack them (``batched``, and more than one of the shape in
    ``plan``). Returns each one's new parameter and state, in the dtypes they are written in, and the
    state the rule created (in the parameter's dtype, as one process stores it), by matrix."""
    in_one_process: dict[Bucket, int] = {}
    for matrix in plan:
        in_one_process[matrix.bucket] = in_one_process.get(matrix.bucket, 0) + 1
    calls: dict[Any, list[_Matrix]] = {}
    for matrix in mine:
        stacked = batched and in_one_process[matrix.bucket] > 1
        calls.setdefault(matrix.bucket if stacked else matrix.index, []).append(matrix)
    results: dict[int, list[Tensor]] = {}
    created: dict[int, dict[str, Tensor]] = {}
    for key, members in calls.items():
        items = []
        for matrix in members:
            param, grad, *values = (torch.cat(shards, dim=matrix.dim) for shards in pieces[matrix.index])
            items.append((param, grad, dict(zip(matrix.keys, values, strict=True))))
        if isinstance(key, int):  # alone in its shape in one process: one matrix, not a stack of one
            outcomes = [optimizer.rule(*items[0], **hyper)]
        else:
            outcomes = rule_on_stack(optimizer, items, hyper)
        for matrix, (new_param, new_state) in zip(members, outcomes, strict=True):
            new_keys = sorted(set(new_state) - set(matrix.keys))
            if not set(matrix.keys) <= set(new_state) or any(
                not isinstance(new_state[k], Tensor) or tuple(new_state[k].shape) != matrix.shape
                for k in new_keys
            ):
                raise RuntimeError(
                    f"{type(optimizer).__name__}'s matrix rule returned state {sorted(new_state)} for state "
                    f"{list(matrix.keys)}: a rule spread over ranks must return the state it is given, and "
                    "any state it creates shaped like the parameter"
                )
            new_values = [new_param, *(new_state[k] for k in matrix.keys)]
            results[matrix.index] = [v.to(d) for v, d in zip(new_values, matrix.written, strict=True)]
            if new_keys:
                created[matrix.index] = {k: new_state[k].to(matrix.dtypes[0]) for k in new_keys}
    return results, created


__all__ = ["assign_owners", "matrix_owners", "matrix_work", "shard_sizes", "step_spread_matrices"]
