"""The one place that touches torch's vmap internals: :func:`vmap_flat`, torch.func.vmap without
its argument-tree layer (torch.func.vmap itself where those internals are missing)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor
from torch.func import vmap

try:  # the functorch transform behind torch.func.vmap, called without its pytree layer
    from torch._C._functorch import (
        _add_batch_dim,
        _remove_batch_dim,
        _vmap_decrement_nesting,
        _vmap_increment_nesting,
    )
    from torch._functorch.vmap import lazy_load_decompositions
except ImportError:  # pragma: no cover - a torch without these internals: use torch.func.vmap
    LEAN_VMAP = False
else:
    LEAN_VMAP = True


def vmap_flat(
    fn: Callable[..., Sequence[Tensor]], size: int, args: Sequence[Tensor], batched: Sequence[bool]
) -> list[Tensor]:
    """``torch.func.vmap(fn, in_dims=...)(*args)`` for a flat list of tensor arguments (``batched[i]``:
    ``args[i]`` has the replica dimension first) and a list of tensor results (replica dimension first).

    This is the transform torch.func.vmap applies — the same batching rules, so the same numbers —
    entered directly: torch.func.vmap's flattening and checking of arbitrary argument trees costs
    more than a small rule's arithmetic, and a batched step makes a dozen such calls. Falls back to
    torch.func.vmap when ``LEAN_VMAP`` is off (or torch lacks the internals)."""
    if not LEAN_VMAP:
        return list(vmap(fn, in_dims=tuple(0 if b else None for b in batched))(*args))
    level = _vmap_increment_nesting(size, "error")
    try:
        inputs = [_add_batch_dim(a, 0, level) if b else a for a, b in zip(args, batched, strict=True)]
        return [_remove_batch_dim(out, level, size, 0) for out in fn(*inputs)]
    finally:
        _vmap_decrement_nesting()


def prepare() -> None:
    """Load the decompositions torch.func.vmap loads on its first call (the lean path skips it)."""
    if LEAN_VMAP:
        lazy_load_decompositions()
