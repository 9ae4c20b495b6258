"""Checking a preset's hyperparameters (and the batched replicas' stand-in optimizers) builds the
optimizer with torch's own code but without importing ``torch._dynamo`` (seconds at every
``optimlab compare``); the answers are the constructor's."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from optimlab.lab.presets import PRESETS, make_config
from optimlab.lab.probe import probe_optimizer


def _params() -> list[torch.Tensor]:
    return [torch.zeros(2, 2, requires_grad=True), torch.zeros(2, requires_grad=True)]


def _outcome(build) -> str:
    try:
        optimizer = build()
    except Exception as error:  # whatever the constructor raises, the probe must raise too
        return f"{type(error).__name__}: {error}"
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    return repr((type(optimizer).__name__, groups, optimizer.defaults, "add_param_group" in vars(optimizer)))


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("hyper", [{}, {"lr": -1.0}, {"lr": "fast"}, {"weight_decay": -0.5}, {"eps": -1.0}])
def test_the_probe_answers_as_the_constructor(name: str, hyper: dict) -> None:
    cls = PRESETS[name].cls
    accepted = PRESETS[name].parameters()
    kwargs = {k: v for k, v in hyper.items() if k in accepted}
    if cls.__name__.startswith("Muon"):
        pytest.skip("Muon takes matrices only, and has its own add_param_group (built as it is)")
    probed = _outcome(lambda: probe_optimizer(cls, _params(), **kwargs))
    assert probed == _outcome(lambda: cls(_params(), **kwargs))


def test_checking_every_preset_does_not_import_dynamo() -> None:
    code = (
        "import sys\n"
        "from optimlab.lab.presets import PRESETS, make_config\n"
        "for name in PRESETS:\n"
        "    if not PRESETS[name].cls.__name__.startswith('Muon'):\n"
        "        make_config(name)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_bad_value_still_gets_the_constructors_message() -> None:
    with pytest.raises(ValueError, match=r"optimizer 'adam:lr=-1': Invalid learning rate: -1.0"):
        make_config("adam", {"lr": -1.0})


def test_a_batched_sweep_does_not_import_dynamo() -> None:
    code = (
        "import sys\n"
        "from optimlab.lab.problems import get_problem\n"
        "from optimlab.lab.replicas import replicas, train_replicas\n"
        "specs = replicas('adam', seeds=range(2), hyperparameters={'lr': [1e-3, 1e-2]})\n"
        "specs += replicas('sgd', seeds=range(2), hyperparameters={'lr': 0.05, 'momentum': 0.9})\n"
        "runs = train_replicas(get_problem('parabola:n=64'), specs, epochs=1)\n"
        "print(len(runs), 'torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["4", "False"]
