"""One grammar for everything named with options: problems, optimizers and schedules.

A spec is ``name`` or ``name:key=value,key=value,...``. Values are typed the same way everywhere:

- ``true``/``false`` → a bool, ``none`` → ``None``;
- a whole number → an int, any other number (``0.1``, ``1e-3``, ``inf``) → a float;
- numbers joined by ``/`` (``0.9/0.999``, ``-1/2``) → a tuple of numbers;
- a value in quotes (``'a,b'`` or ``"x=1"``) → that text as it stands (commas, colons and ``=``
  included), never a number;
- anything else → the text itself (``strong_wolfe``, ``full``, ``data/train.csv``).

A key alone (``rosenbrock:noisy``) means ``key=true``. A list of specs (``optimlab compare -o``)
separates specs with commas: an item with a colon, or without ``=``, starts the next spec, and
``key=value`` items continue the one before — so in a list a flag after the first option needs
its value (``adam:lr=0.01,amsgrad=true``). :func:`format_spec` writes the canonical form (keys
sorted, each value as :func:`format_value` writes it), which is what stored run keys are made of.

Errors are one ``ValueError`` line naming the item and the spec it is in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Spec",
    "format_spec",
    "format_value",
    "parse_options",
    "parse_spec",
    "parse_value",
    "split_specs",
]

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE)
_QUOTES = ("'", '"')


@dataclass(frozen=True)
class Spec:
    """A parsed spec: its name and its options (typed values, in the order given)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The canonical form (:func:`format_spec`)."""
        return format_spec(self.name, self.options)


def _number(text: str) -> int | float | None:
    if not _NUMBER.fullmatch(text):
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_value(text: str) -> Any:
    """One option value, typed (see the module docstring)."""
    text = text.strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] == text[0]:
        return text[1:-1]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    number = _number(text)
    if number is not None:
        return number
    if "/" in text:
        parts = [_number(part.strip()) for part in text.split("/")]
        if all(part is not None for part in parts):
            return tuple(parts)
    return text


def format_value(value: Any) -> str:
    """The canonical text of a value: what :func:`parse_value` reads back as the same value
    (``True`` → ``true``, ``0.5`` → ``0.5``, ``10.0`` → ``10``, ``(0.9, 0.99)`` → ``0.9/0.99``, a
    text that would read as something else, or holds ``,`` ``:`` ``=`` or quotes, in quotes)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "/".join(format_value(v) for v in value)
    text = str(value)
    if text.strip() != text or any(c in text for c in ",:='\"") or parse_value(text) != text:
        quote = "'" if "'" not in text else '"'
        return f"{quote}{text}{quote}"
    return text


def format_spec(name: str, options: Mapping[str, Any]) -> str:
    """``name:key=value,...`` with keys sorted; just ``name`` without options."""
    if not options:
        return name
    return name + ":" + ",".join(f"{key}={format_value(options[key])}" for key in sorted(options))


def _split(text: str, separator: str, what: str) -> list[str]:
    """``text`` split at ``separator`` outside quotes."""
    parts, current, quote = [], [], ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in _QUOTES:
            quote = char
        elif char == separator:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quote:
        raise ValueError(f"unclosed quote in {what!r}")
    parts.append("".join(current))
    return parts


def _partition(text: str, separator: str) -> tuple[str, str, str]:
    """``str.partition`` at the first ``separator`` outside quotes."""
    quote = ""
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in _QUOTES:
            quote = char
        elif char == separator:
            return text[:i], separator, text[i + 1 :]
    return text, "", ""


def parse_options(text: str, what: str) -> dict[str, Any]:
    """``"a=1,b=x,flag"`` → ``{"a": 1, "b": "x", "flag": True}``; ``what`` (the whole spec) names
    the spec in errors."""
    options: dict[str, Any] = {}
    if not text.strip():
        return options
    for item in _split(text, ",", what):
        key, sep, value = _partition(item, "=")
        key = key.strip()
        if not key or (sep and not value.strip()):
            raise ValueError(f"malformed option {item.strip()!r} in {what!r}: expected key=value")
        if not key.isidentifier():
            raise ValueError(f"malformed option {item.strip()!r} in {what!r}: {key!r} is not a name")
        if key in options:
            raise ValueError(f"option {key!r} is given twice in {what!r}")
        options[key] = parse_value(value) if sep else True
    return options


def parse_spec(text: str, what: str = "spec") -> Spec:
    """``name[:key=value,...]`` → :class:`Spec` (``what`` says what kind of spec, for errors)."""
    text = text.strip()
    name, _, rest = _partition(text, ":")
    name = name.strip()
    if not name:
        raise ValueError(f"{what} {text!r} has no name before its options")
    return Spec(name, parse_options(rest, text))


def split_specs(text: str, what: str = "list") -> list[str]:
    """A comma-separated list of specs → the specs' texts (see the module docstring)."""
    specs: list[str] = []
    for raw in _split(text, ",", text):
        item = raw.strip()
        if not item:
            raise ValueError(f"empty item in {what} {text!r}")
        head, colon, _ = _partition(item, ":")
        if colon or "=" not in head:
            specs.append(item)
        elif not specs:
            raise ValueError(f"option {item!r} comes before any name in {what} {text!r}")
        else:
            specs[-1] += ("," if ":" in specs[-1] else ":") + item
    return specs
