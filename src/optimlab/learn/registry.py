"""The demonstrations: every module of :mod:`optimlab.learn.demos` that defines ``DEMO``, in the
order of the course (``Demo.order``). A new demonstration is a new module there; nothing else to wire."""

from __future__ import annotations

import functools
import importlib
import pkgutil

from optimlab.learn import demos as _package
from optimlab.learn.demo import Demo

__all__ = ["demo_names", "demonstrations", "get_demo"]


@functools.cache
def demonstrations() -> dict[str, Demo]:
    """Every demonstration by name, in the order of the course."""
    found: list[Demo] = []
    for info in pkgutil.iter_modules(_package.__path__):
        module = importlib.import_module(f"{_package.__name__}.{info.name}")
        demo = getattr(module, "DEMO", None)
        if isinstance(demo, Demo):
            found.append(demo)
    names = [d.name for d in found]
    if len(set(names)) != len(names):
        raise RuntimeError(f"two demonstrations share a name: {sorted(names)}")
    return {d.name: d for d in sorted(found, key=lambda d: (d.order, d.name))}


def demo_names() -> list[str]:
    return list(demonstrations())


def get_demo(name: str) -> Demo:
    """The demonstration ``name``, or one ``ValueError`` listing them."""
    found = demonstrations()
    if name not in found:
        raise ValueError(f"unknown demonstration {name!r}; demonstrations: {', '.join(found)}")
    return found[name]
