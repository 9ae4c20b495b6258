"""Low-precision storage: optimizer state (and parameters) kept in bfloat16, written with
stochastic rounding.

A bfloat16 number keeps 8 bits of mantissa: round-to-nearest drops any change smaller than half a
unit in the last place, so a small update to a large weight (weight decay, a small learning rate
late in training) is lost every step, and a moment's average stops moving (pytorch#120376).
Stochastic rounding rounds x up with probability equal to its distance from the number below,
which makes the stored value an unbiased estimate of x: E[SR(x)] = x, and the lost updates come
back on average (Gupta et al., "Deep Learning with Limited Numerical Precision", ICML 2015;
Zamirai et al., "Revisiting BFloat16 Training", 2020).

In bits: a float32 x and the bfloat16 below it share their top 16 bits; adding a uniform random
16-bit integer to the bottom 16 bits and truncating carries into the top half with probability
(bottom bits)/2¹⁶ — exactly the distance to the number below in units of the bfloat16 spacing.
The carry runs through the exponent (a mantissa overflow gives the next binade), the sign bit is
untouched (magnitudes round, so negatives are unbiased too), infinities stay infinite and NaNs
stay NaN. A float64 value is first rounded to the nearest float32 (a relative error of 2⁻²⁴,
256 times finer than bfloat16's spacing).

The random bits come from a :class:`RoundingStream`: one ``torch.Generator`` per device, seeded
for each step of each param group from ``(seed, group index, step)``, so the same run rounds the
same way every time and a run resumed from a checkpoint (which keeps the group's count) goes on
exactly as the uninterrupted one.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "COMPILE_MIN_NUMEL",
    "LOW_PRECISION_DTYPES",
    "RoundingStream",
    "check_state_dtype",
    "round_with_bits",
    "stochastic_round",
]

#: the storage dtypes stochastic rounding writes to
LOW_PRECISION_DTYPES: tuple[torch.dtype, ...] = (torch.bfloat16,)

_LOW_BITS = 1 << 16


def check_state_dtype(state_dtype: object) -> torch.dtype | None:
    """``state_dtype`` if the optimizer can keep its state in it (``None``: the parameter's dtype,
    as torch.optim; ``torch.bfloat16``), else a ``ValueError`` naming the choices."""
    if state_dtype is None or state_dtype in LOW_PRECISION_DTYPES:
        return state_dtype  # type: ignore[return-value]
    raise ValueError(f"Invalid state_dtype: {state_dtype!r} (expected None or torch.bfloat16)")


def stochastic_round(value: Tensor, dtype: torch.dtype, generator: torch.Generator | None = None) -> Tensor:
    """``value`` in ``dtype`` (bfloat16), rounded stochastically: to one of the two neighbouring
    bfloat16 numbers, up with probability (x − lower)/(upper − lower), so E[result] = x.

    Exact values (already representable) are returned unchanged; ±inf and NaN are kept. Tensors of
    at least :data:`COMPILE_MIN_NUMEL` elements take one compiled pass (bit for bit the same)."""
    if dtype not in LOW_PRECISION_DTYPES:
        raise ValueError(f"stochastic rounding writes bfloat16, not {dtype}")
    x = value.detach().to(torch.float32).contiguous()
    noise = torch.randint(0, _LOW_BITS, x.shape, dtype=torch.int32, device=x.device, generator=generator)
    if x.numel() >= COMPILE_MIN_NUMEL:
        compiled = _compiled_rounding(x.device.type)
        if compiled is not None:
            return compiled(x, noise)
    return round_with_bits(x, noise)


def round_with_bits(x: Tensor, noise: Tensor) -> Tensor:
    """The float32 ``x`` rounded to bfloat16 with the random 16-bit integers ``noise``: magnitude +
    noise, truncated (the int32 add carries into the sign bit only for NaN payloads, which
    ``torch.where`` puts back, as it does ±inf)."""
    rounded = ((x.view(torch.int32) + noise) & -_LOW_BITS).view(torch.float32)
    return torch.where(torch.isfinite(x), rounded, x).to(torch.bfloat16)  # exact: low bits zero


#: from this many elements on, :func:`round_with_bits` runs compiled (one pass instead of five);
#: smaller tensors are not worth a compiled call's fixed cost (or the first call's compilation)
COMPILE_MIN_NUMEL = 1 << 16


@functools.cache
def _compiled_rounding(device_type: str) -> Callable[[Tensor, Tensor], Tensor] | None:
    from optimlab.optim.engine.kernels import compiler_available

    if not compiler_available(device_type):
        return None
    return torch.compile(round_with_bits, dynamic=True, fullgraph=True)


def _mix(*parts: object) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class RoundingStream:
    """The random bits of one param group's step: a generator per device, seeded from
    ``(seed, group, step)`` and drawn from in the order the engine writes the group's tensors."""

    def __init__(self, seed: int, group: int, step: int) -> None:
        self._seed = _mix("optimlab.rounding", seed, group, step)
        self._generators: dict[torch.device, torch.Generator] = {}

    def generator(self, device: torch.device) -> torch.Generator:
        gen = self._generators.get(device)
        if gen is None:
            gen = self._generators[device] = torch.Generator(device=device).manual_seed(self._seed)
        return gen

    def round(self, value: Tensor, dtype: torch.dtype) -> Tensor:
        """``value`` stochastically rounded to ``dtype`` with this stream's bits."""
        return stochastic_round(value, dtype, self.generator(value.device))
