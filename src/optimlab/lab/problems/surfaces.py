"""Two-dimensional test surfaces: plateaus, saddle points, local minima and ravines made visible.

Each surface is a function ``f(x, y)`` of two tensors, with its known minima, a standard start
point and a target loss. As a problem, the "model" is the point ``θ = (x, y)`` itself
(:class:`Point`), a step is one gradient of ``f`` at ``θ``, and the trajectory of ``θ`` is
recorded. ``noise=σ`` makes the gradients stochastic: each step sees

    f̃(θ) = f(θ) + σ·⟨ε, θ⟩,   ε ~ N(0, I₂) drawn from the run's seeded generator,

whose gradient is ∇f(θ) + σ·ε (unbiased, variance σ²·I); the evaluated loss stays the noiseless
f(θ). ``noisy=true`` is a shorthand for the surface's customary noise level.

References: Rosenbrock (1960); Beale (1958); Himmelblau (1972); Rastrigin (1974); Ackley (1987);
Goldstein & Price (1971); the virtual library of simulation experiments (Surjanovic & Bingham).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from optimlab.lab.problems.base import Batch, Budget, check_options, generator
from optimlab.lab.spec import format_spec

SurfaceFn = Callable[[Tensor, Tensor], Tensor]


def rosenbrock(x: Tensor, y: Tensor) -> Tensor:
    """(1 − x)² + 100·(y − x²)²; a curved banana valley, minimum 0 at (1, 1)."""
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def beale(x: Tensor, y: Tensor) -> Tensor:
    """(1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²; minimum 0 at (3, 0.5)."""
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def booth(x: Tensor, y: Tensor) -> Tensor:
    """(x + 2y − 7)² + (2x + y − 5)²; a plain convex bowl, minimum 0 at (1, 3)."""
    return (x + 2 * y - 7) ** 2 + (2 * x + y - 5) ** 2


def himmelblau(x: Tensor, y: Tensor) -> Tensor:
    """(x² + y − 11)² + (x + y² − 7)²; four global minima of value 0."""
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


def rastrigin(x: Tensor, y: Tensor) -> Tensor:
    """20 + Σ (t² − 10·cos 2πt); a grid of local minima, global minimum 0 at (0, 0)."""
    return 20 + x**2 - 10 * torch.cos(2 * math.pi * x) + y**2 - 10 * torch.cos(2 * math.pi * y)


def ackley(x: Tensor, y: Tensor) -> Tensor:
    """−20·exp(−0.2·√(½(x²+y²))) − exp(½(cos 2πx + cos 2πy)) + e + 20; minimum 0 at (0, 0).

    The square root is taken of ½(x²+y²) + 1e-20 so that the gradient at the origin is 0
    instead of NaN (the value changes by less than 1e-9).
    """
    r = torch.sqrt(0.5 * (x**2 + y**2) + 1e-20)
    waves = 0.5 * (torch.cos(2 * math.pi * x) + torch.cos(2 * math.pi * y))
    return -20 * torch.exp(-0.2 * r) - torch.exp(waves) + math.e + 20


def saddle(x: Tensor, y: Tensor) -> Tensor:
    """x² − y²; a saddle point at (0, 0), unbounded below along y (no minimum)."""
    return x**2 - y**2


def goldstein_price(x: Tensor, y: Tensor) -> Tensor:
    """Goldstein–Price; global minimum 3 at (0, −1), local minima e.g. 30 at (−0.6, −0.4)."""
    a = 1 + (x + y + 1) ** 2 * (19 - 14 * x + 3 * x**2 - 14 * y + 6 * x * y + 3 * y**2)
    b = 30 + (2 * x - 3 * y) ** 2 * (18 - 32 * x + 12 * x**2 + 48 * y - 36 * x * y + 27 * y**2)
    return a * b


def make_ravine(condition: float) -> SurfaceFn:
    """½·(x² + κ·y²): an ill-conditioned quadratic (condition number κ), minimum 0 at (0, 0)."""

    def ravine(x: Tensor, y: Tensor) -> Tensor:
        return 0.5 * (x**2 + condition * y**2)

    ravine.__doc__ = f"½·(x² + {condition:g}·y²); condition number {condition:g}, minimum 0 at (0, 0)."
    return ravine


@dataclass(frozen=True)
class Surface:
    """A 2-D test function with its known minima, start point, target and plotting window."""

    name: str
    description: str
    fn: SurfaceFn
    minima: tuple[tuple[float, float], ...]
    min_value: float | None
    start: tuple[float, float]
    target_loss: float
    noise: float  #: the customary gradient-noise level of ``noisy=true``
    window: tuple[tuple[float, float], tuple[float, float]]  #: ((x_lo, x_hi), (y_lo, y_hi))
    steps: int = 500  #: default budget in steps
    options: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        return self.fn(x, y)


_HIMMELBLAU_MINIMA = (
    (3.0, 2.0),
    (-2.805118, 3.131312),
    (-3.779310, -3.283186),
    (3.584428, -1.848126),
)

SURFACES: dict[str, Surface] = {
    s.name: s
    for s in (
        Surface(
            "rosenbrock",
            "curved narrow valley: slow progress along the banana",
            rosenbrock,
            ((1.0, 1.0),),
            0.0,
            (-1.2, 1.0),
            1e-3,
            1.0,
            ((-2.0, 2.0), (-1.0, 3.0)),
            steps=1000,
        ),
        Surface(
            "beale",
            "flat plateaus and steep walls",
            beale,
            ((3.0, 0.5),),
            0.0,
            (1.0, 1.5),
            1e-3,
            1.0,
            ((-4.5, 4.5), (-4.5, 4.5)),
        ),
        Surface(
            "booth",
            "a plain convex bowl (the sanity check)",
            booth,
            ((1.0, 3.0),),
            0.0,
            (-5.0, -5.0),
            1e-3,
            1.0,
            ((-10.0, 10.0), (-10.0, 10.0)),
        ),
        Surface(
            "himmelblau",
            "four global minima: which one does each optimizer find?",
            himmelblau,
            _HIMMELBLAU_MINIMA,
            0.0,
            (0.0, 0.0),
            1e-3,
            1.0,
            ((-5.0, 5.0), (-5.0, 5.0)),
        ),
        Surface(
            "rastrigin",
            "a lattice of local minima around the global one",
            rastrigin,
            ((0.0, 0.0),),
            0.0,
            (2.3, -1.7),
            1e-2,
            1.0,
            ((-5.12, 5.12), (-5.12, 5.12)),
        ),
        Surface(
            "ackley",
            "a nearly flat plateau with a deep hole and many ripples",
            ackley,
            ((0.0, 0.0),),
            0.0,
            (2.3, -1.7),
            1e-2,
            0.5,
            ((-5.0, 5.0), (-5.0, 5.0)),
        ),
        Surface(
            "saddle",
            "x² − y²: escape the saddle point at the origin (no minimum; target −1)",
            saddle,
            (),
            None,
            (1.0, 1e-3),
            -1.0,
            0.1,
            ((-2.0, 2.0), (-2.0, 2.0)),
            steps=300,
        ),
        Surface(
            "ravine",
            "ill-conditioned quadratic ½(x² + κy²), option condition=κ (default 100)",
            make_ravine(100.0),
            ((0.0, 0.0),),
            0.0,
            (-4.0, 0.5),
            1e-3,
            1.0,
            ((-5.0, 5.0), (-1.0, 1.0)),
            options={"condition": "condition number κ ≥ 1 (default 100)"},
        ),
        Surface(
            "goldstein-price",
            "steep walls, global minimum 3 at (0, −1) and local minima",
            goldstein_price,
            ((0.0, -1.0),),
            3.0,
            (0.5, -0.5),
            3.001,
            10.0,
            ((-2.0, 2.0), (-3.0, 1.0)),
        ),
    )
}


class Point(nn.Module):
    """The "model" of a surface problem: the point θ = (x, y) as one parameter of shape (2,).

    ``forward(noise)`` returns f(θ) + ⟨noise, θ⟩ (``noise`` is empty for exact gradients)."""

    def __init__(self, fn: SurfaceFn, start: tuple[float, float]) -> None:
        super().__init__()
        self.fn = fn
        self.xy = nn.Parameter(torch.tensor(start, dtype=torch.float32))

    def forward(self, noise: Tensor) -> Tensor:
        value = self.fn(self.xy[0], self.xy[1])
        if noise.numel():
            value = value + (noise * self.xy).sum()
        return value


_COMMON_OPTIONS = {
    "noise": "gradient noise σ ≥ 0 (default 0)",
    "noisy": "true: σ = the surface's customary noise level",
    "start": "start point x/y (default: the surface's standard start)",
    "steps_per_epoch": "steps between evaluations (default 10)",
}
_EMPTY = torch.empty(0)


class SurfaceProblem:
    """A :class:`Surface` as a problem (see the module docstring)."""

    version = "1"
    kind = "surface"

    def __init__(self, surface: Surface, options: Mapping[str, Any] | None = None) -> None:
        options = dict(options or {})
        check_options(surface.name, options, {**_COMMON_OPTIONS, **surface.options})
        self.options = options
        fn = surface.fn
        if "condition" in options:
            condition = _positive_float(surface.name, "condition", options["condition"])
            if condition < 1:
                raise ValueError(f"problem {surface.name!r}: condition must be ≥ 1, got {condition:g}")
            fn = make_ravine(condition)
        self.surface = surface
        self.fn = fn
        self.name = surface.name
        self.description = surface.description
        self.target_loss = surface.target_loss
        self.minima = surface.minima
        self.min_value = surface.min_value
        self.window = surface.window
        noise = options.get("noise")
        if noise is None and _truthy(surface.name, "noisy", options.get("noisy", False)):
            noise = surface.noise
        self.noise = 0.0 if noise is None else _positive_float(surface.name, "noise", noise, allow_zero=True)
        self.start = _parse_start(surface.name, options["start"]) if "start" in options else surface.start
        spe = options.get("steps_per_epoch", 10)
        self.steps_per_epoch = int(_positive_float(surface.name, "steps_per_epoch", spe))
        if self.steps_per_epoch != float(spe):
            raise ValueError(f"problem {surface.name!r}: steps_per_epoch must be a whole number, got {spe!r}")
        self.default_budget = Budget(steps=surface.steps)
        #: without noise every seed gives the same run (fixed start, exact gradients)
        self.deterministic = self.noise == 0

    @property
    def spec(self) -> str:
        return format_spec(self.name, self.options)

    def build_model(self, seed: int) -> nn.Module:
        return Point(self.fn, self.start)

    def batches(self, seed: int, epoch: int) -> Iterator[Batch]:
        if self.noise == 0:
            for _ in range(self.steps_per_epoch):
                yield _EMPTY, _EMPTY
            return
        noise = torch.randn(self.steps_per_epoch, 2, generator=generator("noise", seed, epoch)) * self.noise
        for row in noise:
            yield row, _EMPTY

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return output

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        xy = model.xy  # type: ignore[union-attr]
        metrics = {"loss": float(self.fn(xy[0], xy[1]))}
        if self.minima:
            metrics["distance_to_minimum"] = min(math.dist(xy.tolist(), m) for m in self.minima)
        return metrics

    def trajectory_point(self, model: nn.Module) -> list[float]:
        return model.xy.detach().tolist()  # type: ignore[union-attr]


def _truthy(name: str, key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"problem {name!r}: {key} must be true or false, got {value!r}")


def _positive_float(name: str, key: str, value: Any, allow_zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"problem {name!r}: {key} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"problem {name!r}: {key} must be {'≥' if allow_zero else '>'} 0, got {value!r}")
    return number


def _parse_start(name: str, value: Any) -> tuple[float, float]:
    parts = value if isinstance(value, list | tuple) else str(value).split("/")
    try:
        x, y = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"problem {name!r}: start must be x/y, got {value!r}") from None
    return (x, y)
