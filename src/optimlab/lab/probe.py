"""An optimizer built only to be looked at (its hyperparameters checked, its state counted), never
stepped: torch's own construction, without importing ``torch._dynamo``.

``torch.optim.Optimizer.add_param_group`` is wrapped by ``torch._disable_dynamo``, whose first call
imports ``torch._dynamo`` (seconds on a small machine) to keep ``torch.compile`` from tracing it.
A comparison whose runs are all stored, or that trains on the batched replicas, never needs it.
"""

from __future__ import annotations

import types
from typing import Any

from torch.optim import Optimizer

__all__ = ["probe_optimizer"]

#: ``Optimizer.add_param_group`` without its ``torch._disable_dynamo`` wrapper
_ADD_PARAM_GROUP = getattr(Optimizer.add_param_group, "__wrapped__", Optimizer.add_param_group)


def probe_optimizer(cls: type[Optimizer], params: Any, /, **kwargs: Any) -> Optimizer:
    """``cls(params, **kwargs)``, running the very same code (same checks, same errors), except that
    torch's ``add_param_group`` is called without the wrapper that imports ``torch._dynamo``. A class
    with its own ``add_param_group`` is built as it is. Only for optimizers that are never stepped."""
    if cls.add_param_group is not Optimizer.add_param_group or _ADD_PARAM_GROUP is Optimizer.add_param_group:
        return cls(params, **kwargs)
    optimizer = cls.__new__(cls)
    optimizer.add_param_group = types.MethodType(_ADD_PARAM_GROUP, optimizer)  # type: ignore[method-assign]
    optimizer.__init__(params, **kwargs)  # type: ignore[misc]
    del optimizer.add_param_group
    return optimizer
