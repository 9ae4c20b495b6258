"""What the modern optimizers share beyond :class:`~optimlab.optim.base.RuleOptimizer`."""

from __future__ import annotations

from typing import Any

from optimlab.optim.base import RuleOptimizer

__all__ = ["PackageOptimizer"]


class PackageOptimizer(RuleOptimizer):
    """A rule optimizer mirroring a package's optimizer, whose options need not include torch.optim's.

    torch.optim's ``Optimizer.__setstate__`` (run by ``load_state_dict`` and unpickling) adds
    ``differentiable=False`` to ``defaults``, and ``RuleOptimizer`` then gives every group the
    defaults it lacks; for a reference without that option (Lion, AdEMAMix) the key is taken out
    again, so that param groups and ``state_dict`` keep the reference's keys after a load."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        defaults = state.get("defaults", self.__dict__.get("defaults", {}))
        foreign = "differentiable" not in defaults
        super().__setstate__(state)
        if foreign:
            self.defaults.pop("differentiable", None)
            for group in self.param_groups:
                group.pop("differentiable", None)
