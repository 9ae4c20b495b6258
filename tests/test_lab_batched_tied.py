"""Batched replicas of a model with tied weights (one parameter used by two layers): its forward
pass ties the aliases (``functional_call(tie_weights=True)``), a model without ties skips that
search of the module at every call — the same numbers either way."""

from __future__ import annotations

import torch
from torch import nn

from optimlab.lab.replicas import replicas
from optimlab.lab.replicas.batched import BatchedRun
from test_replicas import Curve, check_against_sequential

SPECS = [
    *replicas("sgd", [0, 1], {"lr": [0.05, 0.1], "momentum": 0.9}),
    *replicas("adam", [2, 3], {"lr": [1e-2, 3e-2]}),
]


class TiedCurve(Curve):
    """:class:`Curve` through a 1-4-4-1 MLP whose two 4×4 layers share one weight."""

    def build_model(self, seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            first, middle, second, last = nn.Linear(1, 4), nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 1)
            second.weight = middle.weight
            return nn.Sequential(first, nn.Tanh(), middle, nn.Tanh(), second, nn.Tanh(), last).to(self.dtype)


def _engine(problem: Curve) -> BatchedRun:
    return BatchedRun(
        problem, SPECS, total_steps=3, epochs=1, explosion_factor=1e4, evaluation="full", trajectory=False
    )


def test_tied_weights_are_tied_in_every_replica() -> None:
    problem = TiedCurve()
    engine = _engine(problem)
    assert engine.tied and "4.weight" not in engine.names  # one tensor for both layers
    runs = check_against_sequential(problem, SPECS, epochs=2)
    # the shared weight moves as the sum of both layers' gradients: untied, the second layer would
    # keep its initial weight and the loss curve would differ from the sequential run's
    assert all(not run.diverged for run in runs)


def test_a_model_without_ties_is_called_without_tying() -> None:
    assert not _engine(Curve()).tied
    check_against_sequential(Curve(), SPECS, epochs=2)
