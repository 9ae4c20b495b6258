"""All replicas at once: the batched run (:class:`BatchedRun`) behind :func:`train_batched`."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call

from optimlab.lab.loop import StepsCallback, plain_metrics, plain_objective
from optimlab.lab.loop import divergence as _divergence
from optimlab.lab.loop import explosion_threshold as _threshold
from optimlab.lab.loop import step_scheduler as _step_scheduler
from optimlab.lab.probe import probe_optimizer
from optimlab.lab.replicas import lean_vmap
from optimlab.lab.replicas.common import (
    build_scheduler,
    cycles_momentum,
    evaluate_model,
    fast_data,
    run_budget,
)
from optimlab.lab.replicas.lean_vmap import vmap_flat
from optimlab.lab.replicas.sizing import batchable, evaluation_chunk, optimizer_for
from optimlab.lab.replicas.spec import Evaluation, ReplicaProblem, ReplicaRun, ReplicaSpec
from optimlab.lab.run import EXPLOSION_FACTOR, EvaluationSchedule
from optimlab.optim import RuleOptimizer

#: the fast data path gathers a whole epoch for all replicas at once below this many bytes
EPOCH_GATHER_BYTES = 32 << 20


def _kind(value: Any) -> Any:
    """The structural part of a rule argument: ``None`` and booleans are static, numbers data."""
    if value is None:
        return "off"
    if isinstance(value, bool):
        return ("flag", value)
    if isinstance(value, int | float | Tensor):
        return "value"
    return ("static", value)


def _number(value: Any) -> float:
    return float(value.item()) if isinstance(value, Tensor) else float(value)


class _Group:
    """Replicas ``[start, stop)`` (in engine order) that share one rule and one structure.

    Each replica keeps its own stand-in optimizer (its param group: hyperparameters, schedules and,
    for a rule with ``hyperparameters_per_step``, the group-level bookkeeping, advanced by
    :meth:`begin_step`); the rule arguments that differ between replicas or change during the run
    are columns of :attr:`values`, passed to the vmapped rule as data."""

    def __init__(
        self,
        start: int,
        stop: int,
        optimizers: list[RuleOptimizer],
        hypers: list[dict[str, Any]],
        dynamic: set[str],
        device: torch.device,
        cycling: bool = False,
    ) -> None:
        self.start, self.stop = start, stop
        self.cycling = cycling  # a schedule changes momentum/betas: re-read them after each step
        self.optimizers = optimizers
        first = optimizers[0]
        self.rule = type(first).rule
        #: the optimizer's bookkeeping makes rule arguments at every step (Schedule-Free)
        self.per_step = type(first).hyperparameters_per_step
        #: the parameters switch to other points to be evaluated (Schedule-Free's x)
        self.modes = callable(getattr(first, "eval_point", None))
        self.lr_aliased = False  # "lr" is a view of the run's scheduled lrs (BatchedRun.lr_all)
        self.nonfinite: str = first.param_groups[0]["nonfinite"]
        self.static: dict[str, Any] = {}
        self.values: dict[str, list[float]] = {}
        for key, value in hypers[0].items():
            if _kind(value) != "value":
                self.static[key] = value
                continue
            column = [_number(h[key]) for h in hypers]
            if key in dynamic or self.per_step or any(v != column[0] for v in column):
                self.values[key] = column
            else:
                self.static[key] = value.item() if isinstance(value, Tensor) else value
        self.dynamic: dict[str, Tensor] = {
            key: torch.tensor(column, dtype=torch.float64, device=device)
            for key, column in self.values.items()
        }
        self.state: dict[str, Tensor] = {}
        self._out_keys: list[str] = []

    def step(self, param: Tensor, grad: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The rule (its L1 proximal step included) for every replica of the group, vmapped."""
        state_keys, dynamic_keys = list(self.state), list(self.dynamic)
        n_state = len(state_keys)

        def one(param: Tensor, grad: Tensor, *values: Tensor) -> list[Tensor]:
            state = dict(zip(state_keys, values[:n_state], strict=True))
            hyper = {**self.static, **dict(zip(dynamic_keys, values[n_state:], strict=True))}
            new_param, changed = self.rule(param, grad, state, **hyper)
            new_state = {**state, **changed}
            self._out_keys = list(new_state)
            return [new_param, *new_state.values()]

        args = [param, grad, *self.state.values(), *self.dynamic.values()]
        out = vmap_flat(one, self.stop - self.start, args, [True] * len(args))
        return out[0], dict(zip(self._out_keys, out[1:], strict=True))

    def refresh(self, local: Sequence[int] | None = None) -> None:
        """Re-read the rule arguments of the stand-in optimizers (after a schedule changed them)."""
        indices = range(len(self.optimizers)) if local is None else local
        for i in indices:
            opt = self.optimizers[i]
            hyper = _rule_arguments(opt)
            for key, value in hyper.items():
                if key in self.values:
                    if _kind(value) != "value":
                        raise ValueError(f"a schedule switched {key!r} off mid-run; this cannot be batched")
                    self.values[key][i] = _number(value)
                elif _kind(value) != _kind(self.static.get(key)) or (
                    _kind(value) == "value" and _number(value) != _number(self.static[key])
                ):
                    raise ValueError(f"a schedule changed {key!r}, which this group holds fixed")
        for key, tensor in self.dynamic.items():
            if key != "lr" or not self.lr_aliased:
                tensor.copy_(torch.tensor(self.values[key], dtype=torch.float64))

    def begin_step(self, local: Sequence[int]) -> None:
        """The host bookkeeping of the replicas ``local`` (indices in the group) that step now, on
        each one's own param group, as ``RuleOptimizer.step`` does it (``begin_step``, then
        ``begin_group_step``), and their rule arguments re-read."""
        for i in local:
            opt = self.optimizers[i]
            opt.begin_step(opt.param_groups)
            for group in opt.param_groups:
                opt.begin_group_step(group)
        self.refresh(local)

    def switch(self, local: int, param: Tensor, to: str) -> Tensor:
        """Replica ``local``'s parameters ``param`` switched as its optimizer's ``eval()`` (``to="eval"``)
        or ``train()`` (``"train"``) switches a parameter, given the replica's state."""
        opt = self.optimizers[local]
        state = {key: value[local] for key, value in self.state.items()}
        point = opt.eval_point if to == "eval" else opt.train_point  # type: ignore[attr-defined]
        return point(param, state, opt.param_groups[0])


def _rule_arguments(opt: RuleOptimizer) -> dict[str, Any]:
    return dict(opt.hyperparameters(opt.param_groups[0]))


def _first_arguments(opt: RuleOptimizer) -> dict[str, Any]:
    """The rule arguments of ``opt``'s first step: for a rule with ``hyperparameters_per_step``,
    those of copies of its groups whose bookkeeping has counted one step (AdEMAMix has no step
    count before); ``opt``'s own groups are left as they are."""
    if not type(opt).hyperparameters_per_step:
        return _rule_arguments(opt)
    groups = [dict(group) for group in opt.param_groups]
    opt.begin_step(groups)
    for group in groups:
        opt.begin_group_step(group)
    return dict(opt.hyperparameters(groups[0]))


class BatchedRun:
    """The engine behind :func:`train_batched`: one chunk of replicas stepped together."""

    def __init__(
        self,
        problem: ReplicaProblem,
        specs: Sequence[ReplicaSpec],
        total_steps: int,
        epochs: int,
        explosion_factor: float,
        evaluation: Evaluation,
        trajectory: bool,
        on_steps: StepsCallback | None = None,
    ) -> None:
        self.problem = problem
        self.total_steps, self.epochs = total_steps, epochs
        self.spe = int(problem.steps_per_epoch)
        self.schedule = EvaluationSchedule(total_steps, self.spe)
        self.on_steps = on_steps
        self.explosion_factor = explosion_factor
        self.evaluation = evaluation
        self.record_path = trajectory

        # Optimizers first (validation), then group replicas by rule and structure.
        optimizers: list[RuleOptimizer] = []
        signatures: list[Any] = []
        hypers: list[dict[str, Any]] = []
        for spec in specs:
            cls = optimizer_for(spec.optimizer)
            if not batchable(cls):
                raise ValueError(
                    f"{cls.__name__} cannot be batched (it needs closures); run it with train_sequential"
                )
            try:
                # a stand-in (its hyperparameters checked, its param group read and scheduled), never
                # stepped: built without importing torch._dynamo
                opt = probe_optimizer(cls, [torch.empty(0)], engine="eager", **dict(spec.hyperparameters))
            except TypeError as error:
                raise ValueError(f"optimizer {cls.__name__}: {error}") from None
            hyper = _first_arguments(opt)  # type: ignore[arg-type]
            policy = opt.param_groups[0]["nonfinite"]
            structure = tuple(sorted((k, _kind(v)) for k, v in hyper.items()))
            signatures.append((cls.rule, structure, policy, spec.clip_norm is not None))
            optimizers.append(opt)  # type: ignore[arg-type]
            hypers.append(hyper)
        buckets: dict[Any, list[int]] = {}
        for index, signature in enumerate(signatures):
            buckets.setdefault(signature, []).append(index)
        self.order = [i for members in buckets.values() for i in members]  # engine position → spec index
        self.specs = [specs[i] for i in self.order]
        count = len(self.specs)

        # Models: one per replica from the problem (its seeded initialization), stacked flat.
        models = [problem.build_model(spec.seed) for spec in self.specs]
        self.base = models[0]
        if not batchable(self.base):
            raise ValueError("this model cannot be batched (buffers, random layers or frozen parameters)")
        named = list(self.base.named_parameters())
        #: whether a parameter is registered under two names (tied weights): functional_call must then
        #: tie the names it is given to their aliases, a search of the module it makes at every call
        self.tied = len(list(self.base.named_parameters(remove_duplicate=False))) != len(named)
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        for model in models[1:]:
            other = [(n, p.shape) for n, p in model.named_parameters()]
            if other != list(zip(self.names, self.shapes, strict=True)):
                raise ValueError("replicas must share the model's structure (parameter names and shapes)")
        with torch.no_grad():
            self.flat = torch.stack([torch.cat([p.reshape(-1) for p in m.parameters()]) for m in models])
        self.dtype, self.device = self.flat.dtype, self.flat.device

        # Schedules: each replica's own torch scheduler over its stand-in optimizer.
        self.schedulers: list[Any] = []
        for position, spec in enumerate(self.specs):
            self.schedulers.append(build_scheduler(spec, optimizers[self.order[position]], epochs, self.spe))
        self.lr_values = [float(optimizers[i].param_groups[0]["lr"]) for i in self.order]
        self.lr_all = torch.tensor(self.lr_values, dtype=torch.float64, device=self.device)

        self.groups: list[_Group] = []
        start = 0
        for members in buckets.values():
            stop = start + len(members)
            positions = range(start, stop)
            dynamic: set[str] = set()
            if any(self.schedulers[p] is not None for p in positions):
                dynamic.add("lr")
            cycling = any(cycles_momentum(self.schedulers[p]) for p in positions)
            if cycling:
                dynamic |= {k for k, v in hypers[members[0]].items() if _kind(v) == "value"}
            group = _Group(
                start,
                stop,
                [optimizers[i] for i in members],
                [hypers[i] for i in members],
                dynamic,
                self.device,
                cycling,
            )
            if "lr" in group.dynamic and not group.per_step:  # (per step: the rule's lr is its own)
                group.dynamic["lr"] = self.lr_all[start:stop]
                group.lr_aliased = True
            states: dict[str, list[Tensor]] = {}
            for i, opt in zip(positions, group.optimizers, strict=True):
                for key, value in opt.init_state(self.flat[i], opt.param_groups[0]).items():
                    states.setdefault(key, []).append(value)
            group.state = {key: torch.stack(values) for key, values in states.items()}
            if cycling and not group.per_step:  # (per step: read after each step's bookkeeping)
                group.refresh()
            self.groups.append(group)
            start = stop

        clips = [spec.clip_norm for spec in self.specs]
        self.clip = None
        if any(c is not None for c in clips):
            self.clip = (
                torch.tensor(
                    [c if c is not None else math.inf for c in clips], dtype=torch.float64, device=self.device
                ),
                torch.tensor([c is not None for c in clips], device=self.device),
            )

        self.fast = fast_data(problem)
        self.count = count
        lean_vmap.prepare()

    def _losses(self, flat: Tensor, inputs: Tensor, target: Tensor, shared_data: bool = False) -> Tensor:
        """Every replica's loss on its own batch (``shared_data``: one batch for all)."""
        size = flat.shape[0]
        return vmap_flat(
            lambda p, x, y: [self._replica_loss(p, x, y)],
            size,
            [flat, inputs, target],
            [True, not shared_data, not shared_data],
        )[0]

    # -- the per-replica functions (run under vmap) --

    def _unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, flat.split(self.sizes), self.shapes, strict=True)}

    def _replica_loss(self, flat: Tensor, inputs: Tensor, target: Tensor) -> Tensor:
        return self.problem.loss(self._forward(self._unflatten(flat), inputs), target)

    def _forward(self, params: dict[str, Tensor], inputs: Tensor) -> Tensor:
        """The model on ``inputs`` with ``params`` (``functional_call``; it ties aliases only when the
        model has tied weights: untied, the result is the same)."""
        return functional_call(self.base, params, (inputs,), tie_weights=self.tied)

    # -- data --

    def _epoch_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        problem = self.problem
        if self.fast:
            n = len(problem.x)  # type: ignore[attr-defined]
            orders = []
            for spec in self.specs:
                order = problem.epoch_order(spec.seed, epoch)  # type: ignore[attr-defined]
                orders.append(torch.arange(n) if order is None else order)
            stacked = torch.stack(orders).to(problem.x.device)  # type: ignore[attr-defined]
            size = problem.batch_size  # type: ignore[attr-defined]
            x, y = problem.x, problem.y  # type: ignore[attr-defined]
            epoch_bytes = stacked.numel() * (
                x[0].numel() * x.element_size() + y[0].numel() * y.element_size()
            )
            if epoch_bytes <= EPOCH_GATHER_BYTES:  # the whole epoch at once; batches are views of it
                inputs, targets = x[stacked], y[stacked]
                for begin in range(0, n, size):
                    yield inputs[:, begin : begin + size], targets[:, begin : begin + size]
            else:
                for begin in range(0, n, size):
                    idx = stacked[:, begin : begin + size]
                    yield x[idx], y[idx]
            return
        streams = [iter(problem.batches(spec.seed, epoch)) for spec in self.specs]
        while True:
            try:
                pairs = [next(stream) for stream in streams]
            except StopIteration:
                return
            yield torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    # -- evaluation --

    def _evaluate(self, positions: list[int], evaluation: Evaluation) -> list[dict[str, float]]:
        """The ``evaluation`` of the replicas at ``positions``: ``"loss"`` the full objective alone
        (all replicas at once when it is the loss on the problem's tensors), ``"full"`` everything
        ``problem.evaluate`` gives."""
        problem = self.problem
        if not positions:
            return []
        together = plain_objective(problem) if evaluation == "loss" else plain_metrics(problem)
        if together and self._evaluation_chunk > 1:
            # in chunks of replicas, so that the activations on the whole data set stay in cache
            names, metrics = self._metrics(evaluation)
            columns: list[list[float]] = [[] for _ in names]
            size = self._evaluation_chunk
            with torch.no_grad():
                for begin in range(0, len(positions), size):
                    chunk = self.flat[positions[begin : begin + size]]
                    values = vmap_flat(metrics, chunk.shape[0], [chunk], [True])
                    for column, value in zip(columns, values, strict=True):
                        column.extend(value.tolist())
            return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
        holder = self.base
        results = []
        with torch.no_grad():
            saved = [p.detach().clone() for p in holder.parameters()]
            for position in positions:
                for p, chunk in zip(holder.parameters(), self.flat[position].split(self.sizes), strict=True):
                    p.copy_(chunk.view_as(p))
                results.append(evaluate_model(problem, holder, evaluation))
            for p, value in zip(holder.parameters(), saved, strict=True):
                p.copy_(value)
        return results

    def _metrics(self, evaluation: Evaluation) -> tuple[list[str], Callable[[Tensor], list[Tensor]]]:
        """The names of what :meth:`_evaluate` gives of one replica and the function (run under vmap)
        that computes them from its flat parameters, as ``TensorProblem.evaluate`` (``"full"``, for
        :func:`~optimlab.lab.loop.plain_metrics` problems) or its loss alone (``"loss"``) would,
        in the same order."""
        problem: Any = self.problem
        x, y = problem.x, problem.y
        validation = evaluation == "full" and problem.x_val is not None and problem.y_val is not None
        classification = evaluation == "full" and bool(problem.classification)
        names = ["loss"] + (["accuracy"] if classification else [])
        if validation:
            names += ["val_loss"] + (["val_accuracy"] if classification else [])

        def metrics(flat: Tensor) -> list[Tensor]:
            params = self._unflatten(flat)
            out = self._forward(params, x)
            values = [problem.loss(out, y)]
            if classification:
                values.append((out.argmax(dim=1) == y).float().mean())
            if validation:
                out = self._forward(params, problem.x_val)
                values.append(problem.loss(out, problem.y_val))
                if classification:
                    values.append((out.argmax(dim=1) == problem.y_val).float().mean())
            return values

        return names, metrics

    @contextmanager
    def _evaluation_points(self, positions: list[int]) -> Iterator[None]:
        """Evaluate as the sequential run does (``lab.loop.evaluation_mode``): the replicas at
        ``positions`` whose optimizer has train/eval modes (Schedule-Free) switch to their evaluation
        point (x) and back (to y, by the ``train()`` formula, rounding as it does) afterwards."""
        switched = [(p, g) for p in positions for g in (self._group_of(p),) if g.modes]
        with torch.no_grad():
            for position, group in switched:
                self.flat[position] = group.switch(position - group.start, self.flat[position], "eval")
        try:
            yield
        finally:
            with torch.no_grad():
                for position, group in switched:
                    self.flat[position] = group.switch(position - group.start, self.flat[position], "train")

    @functools.cached_property
    def _evaluation_chunk(self) -> int:
        return evaluation_chunk(self.problem, self.base, self.specs[0].seed)

    # -- schedules --

    def _read_schedules(self, positions: Iterable[int]) -> None:
        touched = False
        for position in positions:
            if self.schedulers[position] is None:
                continue
            touched = True
            group = self._group_of(position)
            opt = group.optimizers[position - group.start]
            self.lr_values[position] = float(opt.param_groups[0]["lr"])
        if touched:
            self.lr_all.copy_(torch.tensor(self.lr_values, dtype=torch.float64))
            for group in self.groups:
                if group.cycling and not group.per_step:
                    group.refresh()

    def _group_of(self, position: int) -> _Group:
        for group in self.groups:
            if group.start <= position < group.stop:
                return group
        raise IndexError(position)

    # -- the loop --

    def _clip(self, grads: Tensor) -> Tensor:
        assert self.clip is not None
        limit, active = self.clip
        norms = torch.stack(
            [torch.linalg.vector_norm(g, dim=1) for g in grads.split(self.sizes, dim=1)], dim=1
        )
        total = torch.linalg.vector_norm(norms, dim=1)
        coef = torch.clamp(limit.to(total.dtype) / (total + 1e-6), max=1.0)  # clip_grad_norm_'s formula
        return torch.where(active[:, None], grads * coef[:, None], grads)

    def _update(self, grads: Tensor, alive: Tensor, alive_list: list[bool]) -> Tensor | None:
        """Apply every group's rule; returns the per-replica 'skipped' mask (nonfinite='skip').

        A group whose replicas have all diverged is left as it is (what masking every one of
        them would give), and a group whose replicas are all alive needs no mask."""
        skipped = None
        for group in self.groups:
            s, e = group.start, group.stop
            live_list = alive_list[s:e]
            if not any(live_list):
                continue
            param, grad = self.flat[s:e], grads[s:e]
            allowed = None if all(live_list) else alive[s:e]
            finite = None
            if group.nonfinite != "propagate":
                finite = torch.isfinite(grad).all(dim=1)
                live = alive[s:e]
                if group.nonfinite == "raise" and bool((~finite & live).any()):
                    bad = int(torch.nonzero(~finite & live)[0, 0]) + s
                    raise FloatingPointError(
                        f"non-finite gradient in replica seed={self.specs[bad].seed} (nonfinite='raise')"
                    )
                if group.nonfinite == "skip":
                    allowed = finite if allowed is None else allowed & finite
                    if skipped is None:
                        skipped = torch.zeros(self.count, dtype=torch.bool, device=self.device)
                    skipped[s:e] = ~finite & live
            if group.per_step:  # the replicas that step (not those skipped) count this step
                steps = live_list
                if group.nonfinite == "skip" and finite is not None:
                    steps = [a and b for a, b in zip(live_list, finite.tolist(), strict=True)]
                group.begin_step([i for i, stepping in enumerate(steps) if stepping])
            new_param, new_state = group.step(param, grad)
            if allowed is not None:
                new_param = torch.where(allowed[:, None], new_param, param)
                old = group.state
                new_state = {
                    k: torch.where(allowed.view(-1, *([1] * (v.dim() - 1))), v, old[k]) if k in old else v
                    for k, v in new_state.items()
                }
            self.flat[s:e] = new_param
            group.state = new_state
        return skipped

    def run(self) -> list[ReplicaRun]:
        count, total = self.count, self.total_steps
        loss_hist = torch.empty(total, count, dtype=self.dtype, device=self.device)
        lr_hist = torch.empty(total, count, dtype=torch.float64, device=self.device)
        steps_done = [0] * count
        skipped = torch.zeros(count, dtype=torch.int64, device=self.device)
        divergence: list[str | None] = [None] * count
        evals: list[list[dict[str, float]]] = [[] for _ in range(count)]
        path = [self.flat.clone()] if self.record_path else None
        alive_list = [True] * count
        start = time.perf_counter()
        trained = 0  # run-steps since on_steps last heard (a step of R live replicas is R)

        def evaluate(positions: list[int], step: int, epoch: float, evaluation: Evaluation) -> None:
            """Evaluate the replicas at ``positions`` and end those it finds diverged."""
            nonlocal trained
            with self._evaluation_points(positions):
                results = self._evaluate(positions, evaluation)
            wall = (time.perf_counter() - start) / count
            for position, metrics in zip(positions, results, strict=True):
                record = {"epoch": epoch, "step": step, "grad_evals": step, "wall_s": wall}
                evals[position].append({**record, **metrics})
            if step > 0:
                finite = torch.isfinite(self.flat).all(dim=1).tolist()
                for position, metrics in zip(positions, results, strict=True):
                    kind = _divergence(metrics["loss"], thresholds[position])
                    if kind is None and not finite[position]:
                        kind = "nan"
                    if kind is not None:
                        divergence[position] = kind
                        alive_list[position] = False
                        steps_done[position] = step
            if self.on_steps is not None and trained:
                self.on_steps(trained)
                trained = 0

        thresholds: list[float] = []
        evaluate(list(range(count)), 0, 0, self.evaluation)
        for position in range(count):
            loss = evals[position][0]["loss"]
            thresholds.append(_threshold(loss, self.explosion_factor))
            divergence[position] = _divergence(loss, math.inf)
            alive_list[position] = divergence[position] is None
        threshold = torch.tensor(thresholds, dtype=torch.float64, device=self.device)
        alive = torch.tensor(alive_list, device=self.device)
        live_count = sum(alive_list)
        per_step = [
            p
            for p, s in enumerate(self.schedulers)
            if s is not None and self.specs[p].schedule.interval == "step"
        ]
        per_epoch = [
            p
            for p, s in enumerate(self.schedulers)
            if s is not None and self.specs[p].schedule.interval != "step"
        ]

        step = 0
        for epoch in range(self.epochs):
            if not any(alive_list):
                break
            for inputs, target in self._epoch_batches(epoch):
                if step >= total:
                    break
                lr_hist[step] = self.lr_all
                point = self.flat.detach().requires_grad_()
                losses = self._losses(point, inputs, target)
                (grads,) = torch.autograd.grad(losses.sum(), point)
                losses = losses.detach()
                if self.clip is not None:
                    grads = self._clip(grads)
                with torch.no_grad():
                    skip = self._update(grads, alive, alive_list)
                if skip is not None:
                    skipped += skip
                loss_hist[step] = losses
                step += 1
                trained += live_count
                if path is not None:
                    path.append(self.flat.clone())
                bad = (~torch.isfinite(losses) | (losses > threshold)) & alive
                if bool(bad.any()):
                    for position in torch.nonzero(bad).flatten().tolist():
                        value = float(losses[position])
                        divergence[position] = _divergence(value, thresholds[position])
                        alive_list[position] = False
                        steps_done[position] = step
                    alive = torch.tensor(alive_list, device=self.device)
                    live_count = sum(alive_list)
                    if not live_count:  # every replica has stopped: nothing left to step
                        break
                if per_step:
                    live = [p for p in per_step if alive_list[p]]
                    for position in live:
                        _step_scheduler(self.schedulers[position])
                    self._read_schedules(live)
                if self.schedule.within_epoch(step) and live_count:
                    # within the epoch: the loss alone, of the replicas still training
                    evaluate([p for p in range(count) if alive_list[p]], step, step / self.spe, "loss")
                    if sum(alive_list) < live_count:
                        alive = torch.tensor(alive_list, device=self.device)
                        live_count = sum(alive_list)
                        if not live_count:
                            break
            # the end of an epoch (or of the budget): evaluate the replicas still training
            evaluate([p for p in range(count) if alive_list[p]], step, epoch + 1, self.evaluation)
            alive = torch.tensor(alive_list, device=self.device)
            live_count = sum(alive_list)
            stepped = []
            for position in per_epoch:
                if alive_list[position]:
                    metric = evals[position][-1]["loss"]
                    _step_scheduler(self.schedulers[position], metric)
                    stepped.append(position)
            self._read_schedules(stepped)
            if step >= total:
                break
        for position in range(count):
            if alive_list[position]:
                steps_done[position] = step
        if self.on_steps is not None and trained:
            self.on_steps(trained)

        runs: list[ReplicaRun | None] = [None] * count
        loss_rows = loss_hist.t().tolist()
        lr_rows = lr_hist.t().tolist()
        skipped_list = skipped.tolist()
        paths = torch.stack(path, dim=1).tolist() if path is not None else None
        for position, spec in enumerate(self.specs):
            done = steps_done[position]
            runs[self.order[position]] = ReplicaRun(
                spec=spec,
                losses=loss_rows[position][:done],
                lrs=lr_rows[position][:done],
                evals=evals[position],
                params={
                    n: t.view(s).clone()
                    for n, t, s in zip(
                        self.names, self.flat[position].split(self.sizes), self.shapes, strict=True
                    )
                },
                steps=done,
                grad_evals=done,
                wall_s=evals[position][-1]["wall_s"],
                diverged=divergence[position] is not None,
                divergence=divergence[position],
                skipped_steps=int(skipped_list[position]),
                batched=True,
                trajectory=paths[position][: done + 1] if paths is not None else None,
            )
        return runs  # type: ignore[return-value]


def train_batched(
    problem: ReplicaProblem,
    specs: Sequence[ReplicaSpec],
    *,
    epochs: int | None = None,
    steps: int | None = None,
    explosion_factor: float = EXPLOSION_FACTOR,
    evaluation: Evaluation = "full",
    trajectory: bool = False,
    threads: int | None = 1,
    on_steps: StepsCallback | None = None,
) -> list[ReplicaRun]:
    """All of ``specs`` in one batched run (no memory check: see :func:`train_replicas`).

    Every spec needs a first-order optimizer of :mod:`optimlab.optim`; results come back in the
    order of ``specs``. ``threads``: torch's intra-op threads while training (restored after);
    the default 1 suits the replicas' small tensors — more threads cost more than they give,
    and many times more on a machine whose cores are busy; ``None`` keeps torch's setting.
    ``on_steps(n)`` hears of the run-steps trained at every evaluation (a step of R replicas
    still training counts R), its calls adding up to the steps of all runs."""
    if not specs:
        return []
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be ≥ 1, got {threads}")
    total_steps, epoch_count = run_budget(problem, epochs, steps)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        engine = BatchedRun(
            problem, specs, total_steps, epoch_count, explosion_factor, evaluation, trajectory, on_steps
        )
        return engine.run()
    finally:
        torch.set_num_threads(previous)
