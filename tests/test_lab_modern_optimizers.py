"""The catalog's new optimizers in the lab (issue 13): which train as batched replicas, Muon's
parameter split, and Schedule-Free's evaluation at its averaged weights (BatchNorm recomputed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import optimlab.optim as optim
from optimlab.lab.loop import evaluation_mode, run_steps
from optimlab.lab.presets import make_config
from optimlab.lab.problems import get_problem
from optimlab.lab.replicas import batchable


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("lion", True),
        ("adopt", True),
        ("rprop", True),
        ("asgd", True),
        ("adafactor", False),  # row and column statistics
        ("muon", False),  # a matrix rule
        ("lamb", False),  # per-tensor trust ratios
        ("prodigy", False),  # sums over every group
        ("ademamix", True),  # its group-level step count is a rule argument
        ("adamw-schedulefree", True),  # its bookkeeping makes rule arguments; x, y pure
        ("sgd-schedulefree", True),
    ],
)
def test_only_flat_elementwise_rules_batch(preset: str, expected: bool) -> None:
    assert batchable(make_config(preset)) is expected


def test_muon_preset_splits_matrices_from_the_rest() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3))
    optimizer = make_config("muon").build([p for p in model.parameters()])
    assert isinstance(optimizer, optim.MuonWithAdamW)
    kinds = [(g["use_muon"], [tuple(p.shape) for p in g["params"]]) for g in optimizer.param_groups]
    assert kinds == [(True, [(2, 1, 3, 3), (3, 8)]), (False, [(2,), (3,)])]
    assert optimizer.param_groups[1]["lr"] == 0.01  # the preset's adamw_lr


def test_muon_on_a_problem_without_matrices_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="Muon needs matrix"):
        make_config("muon").build([torch.zeros(2, requires_grad=True)])


class _Recorder:
    """A problem's evaluate that records the parameters it sees."""

    def __init__(self, problem):
        self.problem = problem
        self.seen: list[torch.Tensor] = []

    def __call__(self, model: nn.Module) -> dict[str, float]:
        self.seen.append(torch.cat([p.detach().flatten().clone() for p in model.parameters()]))
        return self.problem.evaluate(model)


def test_schedule_free_is_evaluated_at_its_average_and_trains_at_y() -> None:
    problem = get_problem("digits-mlp")
    model = problem.build_model(0)
    optimizer = optim.AdamWScheduleFree(model.parameters(), lr=0.01, engine="eager")
    recorder = _Recorder(problem)
    run_steps(problem, model, optimizer, 0, total_steps=6, epochs=1, evaluate=recorder, explosion_factor=1e6)
    assert optimizer.param_groups[0]["train_mode"]  # back in train mode after every evaluation
    y = torch.cat([p.detach().flatten() for p in model.parameters()])
    optimizer.eval()
    x = torch.cat([p.detach().flatten() for p in model.parameters()])
    optimizer.train()
    assert (x - y).abs().max() > 1e-4
    # the swap y → x → y rounds (float32 lerps, as the reference's): x to rounding
    torch.testing.assert_close(recorder.seen[-1], x, rtol=1e-5, atol=1e-8)


def test_batchnorm_statistics_are_recomputed_at_the_average() -> None:
    problem = get_problem("digits-mlp")
    model = nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    optimizer = optim.SGDScheduleFree(model.parameters(), lr=0.1, engine="eager")
    optimizer.train()
    for inputs, target in list(problem.batches(0, 0))[:5]:
        optimizer.zero_grad()
        problem.loss(model(inputs), target).backward()
        optimizer.step()
    before = model[1].running_mean.clone()
    with evaluation_mode(optimizer, model, problem, 0, 0):
        assert not optimizer.param_groups[0]["train_mode"]
        recomputed = model[1].running_mean.clone()
    assert optimizer.param_groups[0]["train_mode"] and model.training
    assert not torch.equal(before, recomputed)


def test_other_optimizers_are_evaluated_as_they_are() -> None:
    problem = get_problem("digits-mlp")
    model = problem.build_model(0)
    optimizer = optim.Adam(model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    with evaluation_mode(optimizer, model, problem, 0, 0):
        assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before, strict=True))
