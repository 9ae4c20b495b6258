"""A run's record is copied and checked fast (720 runs of 384 steps are stored and loaded at every
sweep) with the same results as the general code: ``dataclasses.asdict`` and the per-value checks."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass

from optimlab.lab.run import RunResult, _numbers


def _result(**extra: object) -> RunResult:
    return RunResult(
        problem="parabola",
        optimizer="adam",
        seed=3,
        final_loss=0.25,
        final_metrics={"loss": 0.25, "val_loss": 0.3},
        diverged=False,
        target_loss=0.1,
        steps_to_target=float("inf"),
        evals_to_target=float("nan"),
        losses=[1.0, 0.5, float("nan"), 0.25],
        lrs=[0.1, 0.1, 0.05, 0.05],
        evals=[{"step": 0, "epoch": 0.0, "loss": 1.0}, {"step": 4, "epoch": 1.0, "loss": 0.25}],
        grad_evals=4,
        steps=4,
        wall_s=0.01,
        divergence=None,
        trajectory=[[0.0, 1.0], [0.5, 0.5]],
        extra=dict(extra),
    )


@dataclass
class Point:
    x: float


def test_to_dict_is_asdict() -> None:
    for result in (_result(), _result(note="n", counts=[1, 2], table={"a": [1.5, None]})):
        copied = result.to_dict()
        assert json.dumps(copied) == json.dumps(asdict(result))
        copied["losses"].append(9.0)
        copied["evals"][0]["loss"] = 9.0
        copied["trajectory"][0][0] = 9.0
        assert result.losses[-1] == 0.25 and result.evals[0]["loss"] == 1.0 and result.trajectory[0][0] == 0.0
    # what is not JSON's kinds goes through asdict itself: a tuple stays a tuple, a dataclass a dict
    odd = _result(pair=(1, 2), point=Point(0.5))
    assert odd.to_dict() == asdict(odd) and odd.to_dict()["extra"] == {"pair": (1, 2), "point": {"x": 0.5}}


class Count(enum.IntEnum):
    ONE = 1


def test_the_fast_number_check_agrees() -> None:
    assert _numbers([1, 2.5, float("nan")]) and _numbers([]) and _numbers([Count.ONE, 2.0])
    assert not _numbers([1.0, True]) and not _numbers([1.0, None]) and not _numbers([1.0, "2"])
    assert not _numbers((1.0, 2.0)) and not _numbers(None)
