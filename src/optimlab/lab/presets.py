"""Optimizer presets for the lab, hyperparameter overrides, and comparison config files.

A *preset* names an optimizer of :mod:`optimlab.optim` with fixed structural settings
(``momentum`` = SGD with momentum 0.9, ``nesterov`` = SGD with Nesterov momentum 0.9, …) and two
sets of default hyperparameters:

* ``seed`` — the seed experiment's settings: lr 0.01 for every optimizer, RMSprop α = 0.9, betas
  (0.9, 0.99) for the Adam family, L-BFGS max_iter = max_eval = 10 (the default of ``optimlab
  compare``);
* ``torch`` — torch.optim's own defaults (lr 1e-3 for SGD and Adam, 1.0 for Adadelta, …), or the
  reference package's for the modern optimizers.

The optimizers beyond the seed post (Rprop, ASGD, Adafactor, Muon, Lion, ADOPT, AdEMAMix, LAMB,
Prodigy, Schedule-Free) are not in the default set; their ``seed`` profile is lr 0.01 where the
method's steps have Adam's scale, and the scale it needs otherwise (Lion 1e-3, as its authors advise
3–10× below AdamW's; Muon 0.02 with AdamW at 0.01 for the non-matrix parameters; Prodigy 1, its
multiplier of the estimated step; Schedule-Free SGD 0.1). Their search spaces are what their papers
tune. Schedule-Free runs are evaluated in ``eval()`` mode (:func:`optimlab.lab.loop.run_steps`), and
at their averaged weights as batched replicas too.

Overrides use the syntax ``preset:key=value,key=value`` with ``/`` separating tuple items::

    parse_optimizers("sgd,adam:lr=0.01,betas=0.9/0.99,lbfgs:line_search_fn=strong_wolfe")

Keys are the optimizer's own constructor arguments (plus ``l1`` and ``nonfinite`` for the
first-order ones); values are checked by the optimizer's own validation. Each preset also declares
the search space that ``--tune optuna`` samples (:attr:`Preset.search_space`).
"""

from __future__ import annotations

import inspect
import json
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.optim import Optimizer

import optimlab.optim as optim
from optimlab.lab.probe import probe_optimizer
from optimlab.lab.spec import format_spec, format_value, parse_spec, split_specs

DEFAULTS_PROFILES: tuple[str, ...] = ("seed", "torch")

#: constructor arguments that are implementation switches, not hyperparameters
_IMPLEMENTATION_FLAGS = frozenset(
    {"params", "foreach", "fused", "differentiable", "capturable", "engine", "use_triton", "fsdp_in_use"}
)


@dataclass(frozen=True)
class SearchDim:
    """One dimension of a tuning search space: ``low``–``high``, log-uniform when ``log``."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class Preset:
    """A named optimizer configuration (see the module docstring)."""

    name: str
    description: str
    cls: type[Optimizer]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    seed: Mapping[str, Any] = field(default_factory=dict)
    torch: Mapping[str, Any] = field(default_factory=dict)
    search_space: Mapping[str, SearchDim] = field(default_factory=dict)

    def hyperparameters(self, defaults: str = "seed") -> dict[str, Any]:
        """The constructor arguments of this preset under the ``defaults`` profile."""
        if defaults not in DEFAULTS_PROFILES:
            raise ValueError(f"unknown defaults profile {defaults!r}; expected one of {DEFAULTS_PROFILES}")
        return {**self.fixed, **(self.seed if defaults == "seed" else self.torch)}

    def parameters(self) -> dict[str, inspect.Parameter]:
        """The hyperparameters this preset's optimizer accepts (name → signature entry)."""
        signature = inspect.signature(self.cls.__init__)
        return {
            name: p
            for name, p in signature.parameters.items()
            if name not in _IMPLEMENTATION_FLAGS and name != "self" and p.kind is not p.VAR_KEYWORD
        }


_ADAM_SEED = {"lr": 0.01, "betas": (0.9, 0.99)}
_ADAM_SPACE = {"lr": SearchDim(1e-5, 0.3, log=True), "beta1": SearchDim(0.5, 0.99)}
_SGD_SPACE = {"lr": SearchDim(1e-4, 1.0, log=True)}
_MOMENTUM_SPACE = {**_SGD_SPACE, "momentum": SearchDim(0.5, 0.99)}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "sgd",
            "plain (stochastic) gradient descent: θ ← θ − γ·g",
            optim.SGD,
            seed={"lr": 0.01},
            torch={},
            search_space=_SGD_SPACE,
        ),
        Preset(
            "momentum",
            "SGD with heavy-ball momentum 0.9 (SGDM)",
            optim.SGD,
            fixed={"momentum": 0.9},
            seed={"lr": 0.01},
            search_space=_MOMENTUM_SPACE,
        ),
        Preset(
            "nesterov",
            "SGD with Nesterov momentum 0.9 (NAG)",
            optim.SGD,
            fixed={"momentum": 0.9, "nesterov": True},
            seed={"lr": 0.01},
            search_space=_MOMENTUM_SPACE,
        ),
        Preset(
            "adagrad",
            "per-coordinate steps shrinking with the sum of squared gradients",
            optim.Adagrad,
            seed={"lr": 0.01},
            search_space={"lr": SearchDim(1e-4, 1.0, log=True)},
        ),
        Preset(
            "rmsprop",
            "steps scaled by a moving average of squared gradients",
            optim.RMSprop,
            seed={"lr": 0.01, "alpha": 0.9},
            search_space={"lr": SearchDim(1e-5, 0.1, log=True), "alpha": SearchDim(0.8, 0.999)},
        ),
        Preset(
            "adadelta",
            "RMSprop with a unit-correcting running average of updates",
            optim.Adadelta,
            seed={"lr": 0.01},
            search_space={"lr": SearchDim(1e-3, 10.0, log=True), "rho": SearchDim(0.8, 0.99)},
        ),
        Preset(
            "adam",
            "momentum + RMSprop scaling with bias correction",
            optim.Adam,
            seed=_ADAM_SEED,
            search_space=_ADAM_SPACE,
        ),
        Preset(
            "adamw",
            "Adam with decoupled weight decay (0.01)",
            optim.AdamW,
            seed=_ADAM_SEED,
            search_space={**_ADAM_SPACE, "weight_decay": SearchDim(1e-5, 0.1, log=True)},
        ),
        Preset(
            "adamax",
            "Adam with an infinity-norm second moment",
            optim.Adamax,
            seed=_ADAM_SEED,
            search_space=_ADAM_SPACE,
        ),
        Preset(
            "nadam", "Adam with Nesterov momentum", optim.NAdam, seed=_ADAM_SEED, search_space=_ADAM_SPACE
        ),
        Preset(
            "radam",
            "Adam with a rectified warm-up of the adaptive step",
            optim.RAdam,
            seed=_ADAM_SEED,
            search_space=_ADAM_SPACE,
        ),
        Preset(
            "rprop",
            "sign-based steps with per-coordinate step sizes that grow or shrink (full batch)",
            optim.Rprop,
            seed={"lr": 0.01},
            search_space={"lr": SearchDim(1e-4, 0.1, log=True)},
        ),
        Preset(
            "asgd",
            "SGD with a decaying step and a running (Polyak–Ruppert) average of the iterates",
            optim.ASGD,
            seed={"lr": 0.01},
            search_space={"lr": SearchDim(1e-4, 1.0, log=True)},
        ),
        Preset(
            "adafactor",
            "Adam-like steps with a factored second moment (row and column averages)",
            optim.Adafactor,
            seed={"lr": 0.01},
            search_space={"lr": SearchDim(1e-4, 0.3, log=True)},
        ),
        Preset(
            "muon",
            "Muon (orthogonalized momentum) for ≥ 2-D weights, AdamW (lr 0.01) for the rest",
            optim.MuonWithAdamW,
            fixed={"flatten": True},
            seed={"lr": 0.02, "adamw_lr": 0.01},
            torch={"lr": 0.02},
            search_space={"lr": SearchDim(1e-3, 0.3, log=True), "momentum": SearchDim(0.8, 0.99)},
        ),
        Preset(
            "lion",
            "sign of an interpolated momentum (lr ~10× below AdamW's), decoupled weight decay",
            optim.Lion,
            seed={"lr": 0.001},
            search_space={
                "lr": SearchDim(1e-5, 0.03, log=True),
                "weight_decay": SearchDim(1e-3, 1.0, log=True),
            },
        ),
        Preset(
            "adopt",
            "Adam with the second moment of the previous step (converges with any β₂)",
            optim.ADOPT,
            seed={"lr": 0.01},
            search_space=_ADAM_SPACE,
        ),
        Preset(
            "ademamix",
            "Adam with a second, slow momentum mixed in (α, β₃)",
            optim.AdEMAMix,
            seed={"lr": 0.01},
            search_space={"lr": SearchDim(1e-5, 0.3, log=True), "alpha": SearchDim(1.0, 10.0)},
        ),
        Preset(
            "lamb",
            "Adam steps scaled per tensor by the trust ratio ‖θ‖/‖update‖ (large batches)",
            optim.Lamb,
            seed={"lr": 0.01},
            search_space={
                "lr": SearchDim(1e-4, 0.3, log=True),
                "weight_decay": SearchDim(1e-4, 0.1, log=True),
            },
        ),
        Preset(
            "prodigy",
            "learning-rate-free Adam: estimates the distance to the solution (lr 1 scales it)",
            optim.Prodigy,
            seed={"lr": 1.0},
            search_space={"d_coef": SearchDim(0.1, 10.0, log=True)},
        ),
        Preset(
            "adamw-schedulefree",
            "Schedule-Free AdamW: no schedule, evaluated at the averaged iterate",
            optim.AdamWScheduleFree,
            seed={"lr": 0.01},
            search_space={
                "lr": SearchDim(1e-4, 0.3, log=True),
                "weight_decay": SearchDim(1e-5, 0.1, log=True),
            },
        ),
        Preset(
            "sgd-schedulefree",
            "Schedule-Free SGD with momentum 0.9: no schedule, evaluated at the averaged iterate",
            optim.SGDScheduleFree,
            seed={"lr": 0.1},
            search_space={"lr": SearchDim(1e-3, 10.0, log=True)},
        ),
        Preset(
            "lbfgs",
            "limited-memory BFGS, several gradient evaluations per step",
            optim.LBFGS,
            seed={"lr": 0.01, "max_iter": 10, "max_eval": 10},
            search_space={"lr": SearchDim(1e-3, 1.0, log=True)},
        ),
    )
}

#: the optimizers of ``optimlab compare`` without options: the seed post's nine, nesterov and nadam
SEED_OPTIMIZERS: tuple[str, ...] = (
    "sgd",
    "momentum",
    "nesterov",
    "adagrad",
    "adadelta",
    "rmsprop",
    "adam",
    "adamax",
    "adamw",
    "nadam",
    "lbfgs",
)


def _plain(value: Any) -> Any:
    """A JSON-friendly, hashable form of a hyperparameter value (tuples stay tuples)."""
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, torch.Tensor):
        return value.item()
    return value


def _muon_groups(label: str, params: Iterable[Any]) -> list[dict[str, Any]]:
    """A model's parameters for :class:`~optimlab.optim.MuonWithAdamW` as the lab uses it: every
    ≥ 2-D weight in the Muon group (the small models have no embedding, and their output layer is one
    of their few matrices), the rest (biases) with AdamW — except a parameter its model marks
    ``muon = False`` (``tiny-lm``'s embeddings and head, which Muon's authors train with AdamW).
    A problem without a matrix is refused: Muon would never run."""
    params = list(params)
    if params and isinstance(params[0], dict):
        return params
    matrices = [p for p in params if p.ndim >= 2 and getattr(p, "muon", True)]
    if not matrices:
        raise ValueError(
            f"optimizer {label!r}: Muon needs matrix (≥ 2-D) parameters, and this model has none"
        )
    groups = [{"params": matrices, "use_muon": True}]
    rest = [p for p in params if not (p.ndim >= 2 and getattr(p, "muon", True))]
    return groups + ([{"params": rest, "use_muon": False}] if rest else [])


@dataclass(frozen=True)
class OptimizerConfig:
    """A preset with its hyperparameters resolved: everything needed to build the optimizer.

    ``hyper`` holds the constructor arguments given explicitly (preset + profile + overrides);
    torch.optim's defaults fill in the rest. ``label`` names the configuration in tables and
    summaries (the preset's name unless overrides were given).
    """

    preset: str
    hyper: Mapping[str, Any]
    label: str

    @property
    def cls(self) -> type[Optimizer]:
        return PRESETS[self.preset].cls

    @property
    def lr(self) -> float:
        """The learning rate (the class default when not set)."""
        if "lr" in self.hyper:
            return float(self.hyper["lr"])
        return float(PRESETS[self.preset].parameters()["lr"].default)

    @property
    def is_lbfgs(self) -> bool:
        return issubclass(self.cls, torch.optim.LBFGS)

    def canonical(self) -> dict[str, Any]:
        """What identifies this configuration in a stored run's key (class + explicit arguments)."""
        return {"class": self.cls.__name__, "hyper": {k: _plain(self.hyper[k]) for k in sorted(self.hyper)}}

    def with_hyper(self, label: str | None = None, **changes: Any) -> OptimizerConfig:
        """A copy with ``changes`` applied (validated); ``label`` is kept unless given."""
        hyper = _whole_numbers(self.preset, {**self.hyper, **{k: _plain(v) for k, v in changes.items()}})
        config = replace(self, hyper=hyper, label=label or self.label)
        config.validate()
        return config

    def build(
        self, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], *, probe: bool = False
    ) -> Optimizer:
        """The optimizer over ``params`` (first-order ones run on the eager engine: the lab's
        models are tiny and must not pay for kernel compilation). ``probe``: one only built to see
        whether the constructor accepts the hyperparameters, never stepped
        (:func:`~optimlab.lab.probe.probe_optimizer`)."""
        kwargs = dict(self.hyper)
        if issubclass(self.cls, optim.RuleOptimizer):
            kwargs["engine"] = "eager"
        if issubclass(self.cls, optim.MuonWithAdamW):
            params = _muon_groups(self.label, params)
        return probe_optimizer(self.cls, params, **kwargs) if probe else self.cls(params, **kwargs)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the problem if the hyperparameters are not accepted: an
        unknown name, a value of the wrong kind (a whole number where the optimizer takes one, a
        flag, a pair of betas), a value torch refuses, or one torch takes but that cannot run
        (:data:`_LIMITS`: L-BFGS without history or iterations, a negative tolerance, …)."""
        accepted = PRESETS[self.preset].parameters()
        for key, value in self.hyper.items():
            if key not in accepted:
                raise ValueError(
                    f"optimizer {self.label!r}: unknown hyperparameter {key!r}; "
                    f"{self.cls.__name__} accepts {', '.join(accepted)}"
                )
            _check_type(self.label, key, value, accepted[key])
            limit = _LIMITS.get((self.cls.__name__, key))
            if limit is not None and value is not None and not limit[0](value):
                raise ValueError(f"optimizer {self.label!r}: {key} must be {limit[1]}, got {value!r}")
        if self.is_lbfgs and self.hyper.get("line_search_fn") not in (None, "strong_wolfe"):
            raise ValueError(
                f"optimizer {self.label!r}: line_search_fn must be strong_wolfe or none, "
                f"got {self.hyper['line_search_fn']!r}"
            )
        try:
            self.build(
                [torch.zeros(2, 2, requires_grad=True), torch.zeros(2, requires_grad=True)], probe=True
            )
        except (ValueError, TypeError, RuntimeError) as error:
            raise ValueError(f"optimizer {self.label!r}: {error}") from None


#: limits torch does not check, on values it takes but that crash later or train nothing:
#: (optimizer class, hyperparameter) → (test, what the value must be)
_LIMITS: dict[tuple[str, str], tuple[Callable[[Any], bool], str]] = {
    ("LBFGS", "history_size"): (lambda v: v >= 1, "a whole number ≥ 1 (the past steps L-BFGS keeps)"),
    ("LBFGS", "max_iter"): (lambda v: v >= 1, "a whole number ≥ 1 (with 0 iterations nothing trains)"),
    ("LBFGS", "max_eval"): (lambda v: v >= 1, "a whole number ≥ 1, or none (max_iter × 5/4)"),
    ("LBFGS", "tolerance_grad"): (lambda v: v >= 0, "a number ≥ 0"),
    ("LBFGS", "tolerance_change"): (lambda v: v >= 0, "a number ≥ 0"),
    # above 1 the running average of squared gradients turns negative and every step is NaN
    ("RMSprop", "alpha"): (lambda v: v <= 1, "a smoothing constant between 0 and 1"),
}


def _kinds(parameter: inspect.Parameter) -> set[str]:
    """The type names of a constructor argument's annotation (``{"int", "None"}`` for
    ``int | None``); empty when it has none."""
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        return set()
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    return {part.strip() for part in text.split("|")}


def _whole_number_typed(parameter: inspect.Parameter) -> bool:
    kinds = _kinds(parameter)
    return "int" in kinds and "float" not in kinds


def _check_type(label: str, key: str, value: Any, parameter: inspect.Parameter) -> None:
    def fail(expected: str) -> None:
        raise ValueError(f"optimizer {label!r}: {key} must be {expected}, got {value!r}")

    default = parameter.default
    if value is None and (default is None or "None" in _kinds(parameter)):
        return
    if isinstance(default, bool) or _kinds(parameter) == {"bool"}:
        if not isinstance(value, bool):
            fail("true or false")
    elif _whole_number_typed(parameter):
        if isinstance(value, bool) or not isinstance(value, int):
            fail("a whole number")
    elif isinstance(default, int | float) or "float" in _kinds(parameter):
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail("a number")
        if not math.isfinite(value):
            fail("a finite number")
    elif isinstance(default, tuple):
        if not isinstance(value, tuple) or len(value) != len(default):
            fail(f"{len(default)} numbers separated by '/' (e.g. 0.9/0.99)")
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
            fail("numbers")


def _whole_numbers(preset: str, hyper: Mapping[str, Any]) -> dict[str, Any]:
    """``hyper`` with a whole float (``10.0``, from a config file) given to a whole-number
    hyperparameter as the int it stands for (so ``max_iter=10.0`` is ``max_iter=10``, one key)."""
    accepted = PRESETS[preset].parameters()
    return {
        key: int(value)
        if key in accepted
        and _whole_number_typed(accepted[key])
        and isinstance(value, float)
        and value.is_integer()
        else value
        for key, value in hyper.items()
    }


def make_config(
    preset: str, overrides: Mapping[str, Any] | None = None, defaults: str = "seed", label: str | None = None
) -> OptimizerConfig:
    """The validated configuration of ``preset`` under ``defaults`` with ``overrides`` applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown optimizer {preset!r}; presets: {', '.join(PRESETS)}")
    overrides = {k: _plain(v) for k, v in (overrides or {}).items()}
    hyper = {k: _plain(v) for k, v in PRESETS[preset].hyperparameters(defaults).items()}
    hyper = _whole_numbers(preset, {**hyper, **overrides})
    if label is None:
        label = (
            preset
            if not overrides
            else preset + ":" + ",".join(f"{k}={format_value(v)}" for k, v in overrides.items())
        )
    config = OptimizerConfig(preset=preset, hyper=hyper, label=label)
    config.validate()
    return config


def config_spec(config: OptimizerConfig, defaults: str = "seed") -> str:
    """The spec that gives ``config`` again under the ``defaults`` profile: its preset with the
    hyperparameters that differ from the profile's (``adam:lr=0.05`` for a config file's ``fast =
    {preset = "adam", lr = 0.05}``); ``parse_optimizers(spec, defaults)`` has the same class and
    hyperparameters, so the same run keys."""
    profile = {k: _plain(v) for k, v in PRESETS[config.preset].hyperparameters(defaults).items()}
    changed = {k: v for k, v in config.hyper.items() if k not in profile or _plain(v) != profile[k]}
    return format_spec(config.preset, changed) if changed else config.preset


def parse_optimizers(spec: str, defaults: str = "seed") -> list[OptimizerConfig]:
    """Parse ``"sgd,adam:lr=0.01,betas=0.9/0.99,lbfgs"`` into configurations (the grammar of
    :mod:`optimlab.lab.spec`: an item with ``=`` but no ``:`` continues the previous optimizer's
    options). Raises ``ValueError`` for an unknown preset, a malformed item, an unknown or invalid
    hyperparameter, or a label given twice."""
    configs = []
    for text in split_specs(spec, "optimizer list"):
        parsed = parse_spec(text, "optimizer")
        name = parsed.name.lower()
        if name not in PRESETS and configs and not parsed.options and name.isidentifier():
            raise ValueError(
                f"unknown optimizer {name!r} in {spec!r} (in a list, a flag after an optimizer's "
                f"first option needs its value: {name}=true); presets: {', '.join(PRESETS)}"
            )
        configs.append(make_config(name, parsed.options, defaults))
    check_unique(configs)
    return configs


def check_unique(configs: Iterable[OptimizerConfig]) -> None:
    seen: set[str] = set()
    for config in configs:
        if config.label in seen:
            raise ValueError(f"optimizer {config.label!r} is listed twice")
        seen.add(config.label)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a comparison config file (TOML, or JSON for a ``.json`` name): its settings, each
    checked against its kind (:data:`optimlab.lab.settings.SETTINGS` names them; command-line
    options win). ``optimizers`` may be a table ``{label = {preset = "adam", lr = 0.01, betas =
    [0.9, 0.99]}}`` (``preset`` defaults to the label)."""
    from optimlab.lab.settings import check_config

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read config file {str(path)!r}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ValueError(f"config file {str(path)!r} is not UTF-8 text") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"config file {str(path)!r} is malformed: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a table of settings")
    return check_config(data, f"config file {str(path)!r}")


def optimizers_from_config(table: Any, defaults: str = "seed") -> list[OptimizerConfig]:
    """Configurations from a config file's ``optimizers`` entry (a table, or a list of names/specs)."""
    if isinstance(table, str):
        return parse_optimizers(table, defaults)
    if isinstance(table, list):
        return parse_optimizers(",".join(str(item) for item in table), defaults)
    if not isinstance(table, dict):
        raise ValueError("config 'optimizers' must be a table, a list or a string")
    configs = []
    for label, settings in table.items():
        if settings is None:
            settings = {}
        if not isinstance(settings, Mapping):
            raise ValueError(
                f"config optimizer {label!r} must be a table of hyperparameters "
                f'(e.g. {{preset = "adam", lr = 0.01}}), got {settings!r}'
            )
        settings = dict(settings)
        preset = settings.pop("preset", label)
        if not isinstance(preset, str):
            raise ValueError(f"config optimizer {label!r}: preset must be a name, got {preset!r}")
        preset = preset.lower()
        configs.append(
            make_config(preset, settings, defaults, label=label if settings or label != preset else None)
        )
    check_unique(configs)
    return configs
