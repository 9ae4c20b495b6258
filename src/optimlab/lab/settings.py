"""A comparison's settings — their names, kinds, defaults and meaning — in one place.

The command line (``optimlab compare``), config files and :class:`~optimlab.lab.protocol.Comparison`
read them from here: :func:`resolve` takes each setting from the command line if given, else from
the config file, else its default, and checks it against its kind, with one clear ``ValueError``
naming the setting and where its value came from. This module imports nothing heavy (no torch), so
the command line can check its arguments before it loads the lab.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

TUNE_CHOICES = ("none", "optuna")
REPLICAS_CHOICES = ("auto", "off")
PROFILE_CHOICES = ("seed", "torch")
#: how hyperparameters are chosen: the configurations as given (or an lr grid), or Optuna
Tune = Literal["none", "optuna"]
#: how the lab trains the runs of one problem: ``"auto"`` batches the first-order runs as replicas,
#: ``"off"`` trains every run alone
Replicas = Literal["auto", "off"]
#: the defaults optimizers start from: the seed posts' settings, or torch.optim's
Profile = Literal["seed", "torch"]

#: the problems of the seed experiment (``optimlab compare`` with nothing else)
DEFAULT_PROBLEMS = ("parabola", "rosenbrock")


@dataclass(frozen=True)
class Setting:
    """One setting: its config-file key, kind, default and meaning.

    Kinds: ``"count"`` (a whole number ≥ 1), ``"rate"`` (a finite number ≥ 0), ``"positive"`` (a
    finite number > 0), ``"choice"`` (one of ``choices``), ``"specs"`` (a list of ``name:key=value``
    strings; a single string is a list of one), ``"spec"`` (one such string), ``"optimizers"`` (a
    comma-separated string, a list of them, or a table of configurations), ``"fractions"`` (numbers in
    (0, 1], comma-separated or a list; sorted, each once)."""

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()

    def check(self, value: Any, origin: str) -> Any:
        """``value`` as this setting's kind, or one clear ``ValueError``."""
        if value is None:
            return None
        where = f"{self.name} ({origin})"
        if self.kind == "count":
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or value != int(value)
                or value < 1
            ):
                raise ValueError(f"{where} must be a whole number ≥ 1, got {value!r}")
            return int(value)
        if self.kind in ("rate", "positive"):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{where} must be a finite number, got {value!r}")
            if value < 0 or (self.kind == "positive" and value == 0):
                bound = "> 0" if self.kind == "positive" else "≥ 0"
                raise ValueError(f"{where} must be {bound}, got {value!r}")
            return float(value)
        if self.kind == "choice":
            text = str(getattr(value, "value", value))
            if not isinstance(value, str) and text == str(value):
                raise ValueError(f"{where} must be one of {', '.join(self.choices)}, got {value!r}")
            if text not in self.choices:
                raise ValueError(f"{where} must be one of {', '.join(self.choices)}, got {value!r}")
            return text
        if self.kind == "specs":
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, Sequence) or not items or not all(isinstance(i, str) for i in items):
                raise ValueError(f"{where} must be a spec or a list of specs (strings), got {value!r}")
            return [str(i) for i in items]
        if self.kind == "spec":
            if not isinstance(value, str):
                raise ValueError(f"{where} must be a spec string such as 'cosine:T_max=100', got {value!r}")
            return value
        if self.kind == "fractions":
            return parse_fractions(value, where)
        if self.kind == "optimizers":
            if isinstance(value, str | Mapping) or (
                isinstance(value, Sequence) and all(isinstance(i, str) for i in value)
            ):
                return value
            raise ValueError(f"{where} must be a string, a list of strings or a table, got {value!r}")
        raise AssertionError(f"unknown kind {self.kind!r}")  # pragma: no cover


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "problems", "specs", list(DEFAULT_PROBLEMS), "the problems (specs such as ravine:condition=100)"
        ),
        Setting("optimizers", "optimizers", None, "the optimizers (default: the seed experiment's eleven)"),
        Setting("defaults", "choice", "seed", "the defaults optimizers start from", PROFILE_CHOICES),
        Setting("seeds", "count", 5, "seeds per configuration"),
        Setting("lr_grid", "count", None, "learning rates per optimizer, log-spaced around its own"),
        Setting("tune", "choice", "none", "hyperparameter tuning", TUNE_CHOICES),
        Setting("budget", "count", 20, "Optuna trials per optimizer and problem (with tune = optuna)"),
        Setting("epochs", "count", None, "epochs per run (default: each problem's own budget)"),
        Setting("steps", "count", None, "steps per run instead of epochs"),
        Setting("schedule", "spec", None, "a learning-rate schedule spec (optimlab list shows them)"),
        Setting("weight_decay", "rate", None, "weight decay (default: each optimizer's own)"),
        Setting("l1", "rate", 0.0, "L1 regularization (a proximal step: exact zeros)"),
        Setting("clip_norm", "positive", None, "clip gradients to this global norm"),
        Setting(
            "baseline",
            "spec",
            None,
            "the baseline optimizer (a preset, or a label of the optimizers; added if absent), tuned "
            "like every other: verdicts become speed-ups relative to it",
        ),
        Setting(
            "horizons",
            "fractions",
            None,
            "fractions of the budget each configuration is trained to separately, its schedule decayed "
            "to each (with a baseline; default 1)",
        ),
    )
}


def parse_fractions(value: Any, where: str = "horizons") -> tuple[float, ...]:
    """``"0.25,1"`` or ``[0.25, 1]`` → ``(0.25, 1.0)``: fractions in (0, 1], sorted, each once; one
    clear ``ValueError`` for anything else."""
    items: list[Any]
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, Sequence):
        items = list(value)
    else:
        raise ValueError(f"{where} must be fractions such as 0.25,1, got {value!r}")
    if not items:
        raise ValueError(f"{where} must name at least one fraction, got {value!r}")
    fractions = []
    for item in items:
        try:
            if isinstance(item, bool):
                raise ValueError
            number = float(item)
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be fractions such as 0.25,1, got {item!r} in {value!r}") from None
        if not (math.isfinite(number) and 0 < number <= 1):
            raise ValueError(f"{where}: each fraction must be in (0, 1], got {item!r}")
        fractions.append(number)
    return tuple(sorted(set(fractions)))


def check_config(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A config file's settings, each checked (unknown keys and wrong kinds are one clear error)."""
    unknown = sorted(set(data) - set(SETTINGS))
    if unknown:
        raise ValueError(f"{source}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(SETTINGS))}")
    for name, value in data.items():
        if value is None:  # JSON's null: leave the setting out to get its default
            raise ValueError(f"{name} ({source}) has no value (null); leave it out for the default")
    return {name: SETTINGS[name].check(value, source) for name, value in data.items()}


def resolve(
    command_line: Mapping[str, Any], config: Mapping[str, Any], source: str = "config file"
) -> dict[str, Any]:
    """Every setting's value: the command line's (not ``None``), else the config file's, else the
    default; each checked against its kind. The command line wins over a config file."""
    values = {}
    for name, setting in SETTINGS.items():
        if command_line.get(name) is not None:
            values[name] = setting.check(command_line[name], "command line")
        elif config.get(name) is not None:
            values[name] = setting.check(config[name], source)
        else:
            values[name] = setting.default
    if values["epochs"] is not None and values["steps"] is not None:
        raise ValueError("give either --epochs or --steps (epochs or steps), not both")
    if values["horizons"] is not None and values["baseline"] is None:
        raise ValueError("--horizons (horizons) needs a --baseline (baseline) to compare against")
    if values["tune"] == "optuna" and values["lr_grid"] is not None:
        raise ValueError("choose either --lr-grid or --tune optuna, not both")
    return values
