"""Reuse a figure's rendering when nothing it depends on changed: a rerun re-renders nothing.

Building a figure's Plotly JSON and drawing its PNG take most of a report's time (seconds for a 2-D
surface's 200-frame animation), and a rerun of ``optimlab compare`` that trains nothing redraws the
same figures from the same stored numbers. Each figure written by :class:`~optimlab.reports.output.Output`
gets a cache entry ``figures/.cache/PAGE/NAME.json``: the figure's :func:`content_key`, its Plotly
JSON, and the SHA-256 of the PNG/GIF files it wrote. The next run reuses them only when

* the key is the same — a SHA-256 of the figure's class and of every value it holds, encoded exactly
  (floats by their bits, arrays by dtype, shape and bytes, mappings in order), together with
  :func:`code_fingerprint`: optimlab's version and every one of its source files, the versions of
  plotly, matplotlib and numpy, and matplotlib's settings. Any change of data, options or code
  re-renders;
* and each file still holds the bytes recorded (a PNG edited or removed is drawn again).

A figure holding a value the key cannot encode exactly (anything but numbers, strings, arrays,
sequences, mappings and dataclasses of them) is always rendered, never cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from collections.abc import Mapping
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

import optimlab

__all__ = ["CACHE", "FigureCache", "code_fingerprint", "content_key", "file_digest"]

#: the folder under ``figures/`` that holds the cache entries, one sub-folder per page
CACHE = ".cache"
_FORMAT = 1


class Uncacheable(TypeError):
    """A figure holds a value whose content cannot be encoded exactly."""


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 of what renders a figure besides its data: optimlab's version and every source file of
    the package, the versions of plotly, matplotlib and numpy, and matplotlib's ``rcParams``."""
    import matplotlib

    digest = hashlib.sha256(f"optimlab {optimlab.__version__}\0".encode())
    root = Path(optimlab.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for dist in ("plotly", "matplotlib", "numpy"):
        digest.update(f"{dist} {version(dist)}\0".encode())
    # the stored settings as they are (reading "backend" through rcParams would resolve it, loading
    # pyplot; the PNGs are drawn on an Agg canvas whatever it is)
    settings = sorted((k, v) for k, v in dict.items(matplotlib.rcParams) if k != "backend")
    digest.update(repr(settings).encode())
    return digest.hexdigest()


def _feed(digest: Any, value: object) -> None:
    """Add ``value`` to ``digest``, tagged by its type, so that two values feed the same bytes only if
    they are equal and of the same types."""
    update = digest.update
    kind = type(value)
    if isinstance(value, np.ndarray | np.generic):
        array = np.ascontiguousarray(value)
        if array.dtype.hasobject:
            update(f"o{kind.__qualname__}{array.shape};".encode())
            for item in array.ravel().tolist():
                _feed(digest, item)
        else:
            update(f"a{kind.__qualname__}{array.dtype.str}{array.shape};".encode() + array.tobytes())
    elif value is None or isinstance(value, bool):
        update(f"c{value!r};".encode())
    elif isinstance(value, int):
        update(f"i{kind.__qualname__}{value};".encode())
    elif isinstance(value, float):
        update(f"f{kind.__qualname__}".encode() + struct.pack("<d", value))
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        update(f"s{kind.__qualname__}{len(data)};".encode() + data)
    elif isinstance(value, bytes):
        update(f"b{len(value)};".encode() + value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        update(f"d{kind.__module__}.{kind.__qualname__};".encode())
        for field in dataclasses.fields(value):
            _feed(digest, field.name)
            _feed(digest, getattr(value, field.name))
    elif isinstance(value, Mapping):
        update(f"m{type(value).__qualname__}{len(value)};".encode())
        for key, item in value.items():
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, list | tuple | range):
        update(f"l{type(value).__qualname__}{len(value)};".encode())
        for item in value:
            _feed(digest, item)
    else:
        raise Uncacheable(f"cannot key a {type(value).__qualname__}")


def content_key(figure: object) -> str | None:
    """The cache key of ``figure`` (a dataclass): its class and content with :func:`code_fingerprint`;
    ``None`` when it holds a value that cannot be encoded exactly."""
    digest = hashlib.sha256(f"optimlab figure {_FORMAT}\0{code_fingerprint()}\0".encode())
    try:
        _feed(digest, figure)
    except (Uncacheable, RecursionError):
        return None
    return digest.hexdigest()


def file_digest(path: Path) -> str | None:
    """The SHA-256 of a file's bytes, ``None`` when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class FigureCache:
    """The cache entries of one page: ``folder/NAME.json``, each ``{"format", "key", "plotly",
    "height", "files": {"png": sha256, ...}}``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.used: set[str] = set()

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def get(self, name: str, key: str | None) -> dict[str, Any]:
        """The entry of figure ``name`` if it was stored under ``key``; else ``{}``."""
        if key is None:
            return {}
        try:
            entry = json.loads(self._path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(entry, dict) or entry.get("format") != _FORMAT or entry.get("key") != key:
            return {}
        if not isinstance(entry.get("plotly"), str) or not isinstance(entry.get("files"), dict):
            return {}
        return entry

    def reusable(self, entry: Mapping[str, Any], kind: str, path: Path) -> bool:
        """Whether ``path`` (the figure's ``kind`` of file) still holds what ``entry`` recorded."""
        recorded = entry.get("files", {}).get(kind) if entry else None
        return recorded is not None and path.is_file() and file_digest(path) == recorded

    def put(self, name: str, key: str | None, plotly_json: str, height: int, files: dict[str, str]) -> None:
        """Record figure ``name``'s rendering under ``key`` (nothing when ``key`` is ``None``: an old
        entry is removed)."""
        self.used.add(name)
        path = self._path(name)
        entry = {"format": _FORMAT, "key": key, "height": height, "files": files, "plotly": plotly_json}
        try:
            if key is None:
                path.unlink(missing_ok=True)
                return
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(entry), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:  # a cache that cannot be written costs time on the next run, nothing else
            path.unlink(missing_ok=True)

    def prune(self) -> None:
        """Remove the entries of figures this run did not write (and the folder, when empty)."""
        if not self.folder.is_dir():
            return
        try:
            for path in self.folder.iterdir():
                if (path.suffix == ".json" and path.stem not in self.used) or path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)
            if not any(self.folder.iterdir()):
                self.folder.rmdir()
        except OSError:
            pass
