"""Building blocks shared by the built-in problems: budgets, seeding, tensor datasets.

Nothing here is specific to one problem. :class:`TensorProblem` is the base of every problem whose
data is a fixed pair of tensors (``parabola``, ``digits-*``, ``quadratic-100d``,
``sparse-regression``): it draws mini-batches with a seeded permutation (no ``DataLoader``), so a
run's data order depends only on its seed and epoch, and it supports the three batch regimes
(``batch=full`` — gradient descent, ``batch=1`` — one-sample SGD, ``batch=N`` — mini-batch).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from optimlab.lab.spec import format_spec

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class Budget:
    """How long a run trains: ``epochs`` full passes, or exactly ``steps`` optimizer steps.

    Exactly one of the two is set. ``total_steps(steps_per_epoch)`` gives the step count and
    ``epochs_needed(steps_per_epoch)`` the number of (possibly partial) epochs it spans.
    """

    epochs: int | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("a budget needs exactly one of epochs or steps")
        value = self.epochs if self.epochs is not None else self.steps
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"a budget must be a positive whole number, got {value!r}")

    def total_steps(self, steps_per_epoch: int) -> int:
        return self.steps if self.steps is not None else self.epochs * steps_per_epoch  # type: ignore[operator]

    def epochs_needed(self, steps_per_epoch: int) -> int:
        return math.ceil(self.total_steps(steps_per_epoch) / steps_per_epoch)

    def as_dict(self) -> dict[str, int]:
        return {"epochs": self.epochs} if self.epochs is not None else {"steps": self.steps}  # type: ignore[dict-item]

    def __str__(self) -> str:
        return f"{self.epochs} epochs" if self.epochs is not None else f"{self.steps} steps"


def mix_seed(*parts: Any) -> int:
    """A 63-bit seed derived from ``parts`` (stable across processes and Python versions)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def generator(*parts: Any) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``parts`` (see :func:`mix_seed`)."""
    return torch.Generator().manual_seed(mix_seed(*parts))


def seeded_module(seed: int, factory: Callable[[], nn.Module]) -> nn.Module:
    """``factory()`` with torch's global RNG seeded by ``seed`` (restored afterwards), so the
    default initializations of ``nn`` layers are reproducible per seed."""
    with torch.random.fork_rng(devices=[]):
        # the CPU generator only (what fork_rng restores): torch.manual_seed would also reseed
        # every CUDA generator for good, and costs a millisecond of lazy-call bookkeeping per model
        torch.default_generator.manual_seed(mix_seed("init", seed))
        return factory()


def parse_batch(value: Any, n: int, default: int) -> int:
    """The batch size for a batch-regime option: ``"full"`` (n), ``1`` (one sample) or an integer."""
    if value is None:
        return min(default, n)
    if isinstance(value, str) and value.lower() in ("full", "gd", "all"):
        return n
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"batch must be 'full' or a positive integer, got {value!r}") from None
    if size < 1 or size != float(value):
        raise ValueError(f"batch must be 'full' or a positive integer, got {value!r}")
    return min(size, n)


def check_options(name: str, options: Mapping[str, Any], allowed: Mapping[str, str]) -> None:
    """Reject options a problem does not know, naming the ones it does."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        known = ", ".join(f"{key} ({doc})" for key, doc in allowed.items()) or "none"
        raise ValueError(f"problem {name!r} has no option {unknown[0]!r}; its options: {known}")


class TensorProblem:
    """A problem whose training data is a fixed pair of tensors ``(x, y)``.

    Subclasses set ``name``, ``description``, ``target_loss``, ``default_budget`` and
    ``x``/``y`` (and optionally ``x_val``/``y_val``), and implement :meth:`make_model` and
    :meth:`loss`. Batches are ``x[idx], y[idx]`` with ``idx`` from a permutation seeded by
    ``(seed, epoch)``; ``batch_size = len(x)`` (``batch=full``) keeps the natural order.
    """

    name: str = ""
    description: str = ""
    target_loss: float = 0.0
    default_budget: Budget = Budget(epochs=1)
    version: str = "1"
    x: Tensor
    y: Tensor
    x_val: Tensor | None = None
    y_val: Tensor | None = None
    batch_size: int = 32
    #: extra metrics from :meth:`metrics` are reported with these names
    classification: bool = False

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options: dict[str, Any] = dict(options or {})

    # -- the protocol ------------------------------------------------------------------------------

    @property
    def spec(self) -> str:
        """The canonical spec ``name[:key=value,...]`` of this problem with its options."""
        return format_spec(self.name, self.options)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def build_model(self, seed: int) -> nn.Module:
        return seeded_module(seed, self.make_model)

    def make_model(self) -> nn.Module:
        raise NotImplementedError

    def epoch_order(self, seed: int, epoch: int) -> Tensor | None:
        """The order of the samples in epoch ``epoch`` of seed ``seed`` (``None``: the natural order,
        for full-batch training); :meth:`batches` cuts it into batches, and the lab's batched
        replicas gather every replica's batch from it at once."""
        if self.batch_size >= len(self.x):
            return None
        return torch.randperm(len(self.x), generator=generator("batches", seed, epoch))

    def batches(self, seed: int, epoch: int) -> Iterator[Batch]:
        order = self.epoch_order(seed, epoch)
        if order is None:
            yield self.x, self.y
            return
        for start in range(0, len(self.x), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x[idx], self.y[idx]

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """``loss`` on the whole training set, and ``val_loss`` (+ ``val_accuracy``) when the
        problem has a validation split."""
        metrics = {"loss": float(self.loss(model(self.x), self.y))}
        metrics.update(self.metrics(model))
        if self.x_val is not None and self.y_val is not None:
            out = model(self.x_val)
            metrics["val_loss"] = float(self.loss(out, self.y_val))
            if self.classification:
                metrics["val_accuracy"] = float((out.argmax(dim=1) == self.y_val).float().mean())
        return metrics

    def metrics(self, model: nn.Module) -> dict[str, float]:
        """Extra problem-specific metrics (override); computed without gradients."""
        if self.classification:
            return {"accuracy": float((model(self.x).argmax(dim=1) == self.y).float().mean())}
        return {}

    def trajectory_point(self, model: nn.Module) -> list[float] | None:
        return None
