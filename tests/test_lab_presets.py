"""Optimizer presets, command-line overrides and config files."""

from __future__ import annotations

import json

import pytest
import torch

import optimlab.optim as optim
from optimlab.lab.presets import (
    PRESETS,
    SEED_OPTIMIZERS,
    load_config,
    make_config,
    optimizers_from_config,
    parse_optimizers,
)


def test_every_preset_builds_its_optimlab_optimizer() -> None:
    assert set(PRESETS) == {
        "sgd",
        "momentum",
        "nesterov",
        "adagrad",
        "rmsprop",
        "adadelta",
        "adam",
        "adamw",
        "adamax",
        "nadam",
        "radam",
        "lbfgs",
        # issue 13: torch.optim's other classes and the modern optimizers (SparseAdam takes sparse
        # gradients only, which no lab problem has)
        "rprop",
        "asgd",
        "adafactor",
        "muon",
        "lion",
        "adopt",
        "ademamix",
        "lamb",
        "prodigy",
        "adamw-schedulefree",
        "sgd-schedulefree",
    }
    params = [torch.zeros(3, 2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    for name in PRESETS:
        for profile in ("seed", "torch"):
            optimizer = make_config(name, defaults=profile).build(params)
            assert type(optimizer).__module__.startswith("optimlab.optim")
            if isinstance(optimizer, optim.RuleOptimizer):
                assert optimizer.engine.name == "eager"


def test_seed_profile_is_the_seed_post_and_torch_profile_is_torch() -> None:
    seed = {c.label: c for c in parse_optimizers(",".join(SEED_OPTIMIZERS))}
    assert list(seed) == [
        "sgd",
        "momentum",
        "nesterov",
        "adagrad",
        "adadelta",
        "rmsprop",
        "adam",
        "adamax",
        "adamw",
        "nadam",
        "lbfgs",
    ]
    assert all(c.lr == 0.01 for c in seed.values())
    assert seed["rmsprop"].hyper["alpha"] == 0.9
    for name in ("adam", "adamax", "adamw", "nadam"):
        assert seed[name].hyper["betas"] == (0.9, 0.99)
    assert seed["lbfgs"].hyper["max_iter"] == 10
    assert seed["momentum"].hyper["momentum"] == 0.9 and seed["nesterov"].hyper["nesterov"] is True
    torch_defaults = {c.label: c for c in parse_optimizers("sgd,adam,adadelta,lbfgs,adamw", defaults="torch")}
    assert torch_defaults["sgd"].lr == 1e-3 and torch_defaults["adam"].lr == 1e-3
    assert torch_defaults["adadelta"].lr == 1.0 and torch_defaults["lbfgs"].lr == 1.0
    group = torch_defaults["adamw"].build([torch.zeros(1, requires_grad=True)]).param_groups[0]
    assert group["weight_decay"] == 1e-2 and group["betas"] == (0.9, 0.999)


def test_overrides_reach_the_optimizer() -> None:
    configs = parse_optimizers(
        "sgd,adam:lr=0.02,betas=0.8/0.9,amsgrad=true,lbfgs:line_search_fn=strong_wolfe"
    )
    assert [c.label for c in configs] == [
        "sgd",
        "adam:lr=0.02,betas=0.8/0.9,amsgrad=true",
        "lbfgs:line_search_fn=strong_wolfe",
    ]
    group = configs[1].build([torch.zeros(1, requires_grad=True)]).param_groups[0]
    assert group["lr"] == 0.02 and group["betas"] == (0.8, 0.9) and group["amsgrad"] is True
    assert (
        configs[2].build([torch.zeros(1, requires_grad=True)]).param_groups[0]["line_search_fn"]
        == "strong_wolfe"
    )
    assert configs[1].canonical() == {
        "class": "Adam",
        "hyper": {"amsgrad": True, "betas": (0.8, 0.9), "lr": 0.02},
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("adamm", "unknown optimizer 'adamm'"),
        ("adam:lr=abc", "lr must be a number"),
        ("adam:betas=0.9", "betas must be 2 numbers"),
        ("adam:lr=-1", "Invalid learning rate"),
        ("adam:momentum=0.9", "unknown hyperparameter 'momentum'"),
        ("adam:lr", "lr must be a number"),  # a bare key is a flag (lr=true), as in every spec
        ("adam:lr=", "malformed option"),
        ("sgd,sgd", "listed twice"),
        ("lr=0.1,sgd", "comes before any name"),
        ("sgd,,adam", "empty item"),
        ("adam:betas=1.5/0.9", "Invalid beta"),
        ("nesterov:momentum=0", "Nesterov momentum requires"),
        ("sgd:nesterov=maybe", "nesterov must be true or false"),
        ("adam:engine=fused", "unknown hyperparameter 'engine'"),
        ("lbfgs:line_search_fn=armijo", "line_search_fn"),
        ("adam:lr=inf", "finite"),
        # values torch takes but that crash later or train nothing
        ("lbfgs:history_size=0", "history_size must be a whole number ≥ 1"),
        ("lbfgs:history_size=-3", "history_size must be a whole number ≥ 1"),
        ("lbfgs:max_iter=0", "max_iter must be a whole number ≥ 1"),
        ("lbfgs:max_iter=2.5", "max_iter must be a whole number, got 2.5"),
        ("lbfgs:max_iter=true", "max_iter must be a whole number, got True"),
        ("lbfgs:max_eval=abc", "max_eval must be a whole number, got 'abc'"),
        ("lbfgs:max_eval=0", "max_eval must be a whole number ≥ 1"),
        ("lbfgs:tolerance_grad=-1", "tolerance_grad must be a number ≥ 0"),
        ("lbfgs:tolerance_change=-1e-9", "tolerance_change must be a number ≥ 0"),
        ("lbfgs:history_size=false", "history_size must be a whole number"),
        ("rmsprop:alpha=2", "alpha must be a smoothing constant between 0 and 1"),
    ],
)
def test_bad_optimizer_specs_are_one_clear_value_error(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_optimizers(spec)
    assert "\n" not in str(info.value)


def test_what_torch_takes_and_runs_meaningfully_is_kept() -> None:
    param = [torch.zeros(1, requires_grad=True)]
    assert parse_optimizers("sgd:momentum=0.9,dampening=5")[0].build(param).param_groups[0]["dampening"] == 5
    lbfgs = parse_optimizers("lbfgs:max_eval=none,history_size=3,tolerance_grad=0")[0]
    assert lbfgs.build(param).param_groups[0]["max_eval"] == 10 * 5 // 4  # torch's own default
    # a whole number written as a float (a config file's 10.0) is that number: one configuration
    assert (
        make_config("lbfgs", {"max_iter": 10.0}).canonical()
        == make_config("lbfgs", {"max_iter": 10}).canonical()
    )
    assert isinstance(make_config("lbfgs").with_hyper(history_size=7.0).hyper["history_size"], int)


def test_config_files_toml_and_json(tmp_path) -> None:
    toml = tmp_path / "lab.toml"
    toml.write_text(
        'problems = ["booth"]\nseeds = 2\n[optimizers.adam]\nlr = 0.05\nbetas = [0.8, 0.9]\n'
        '[optimizers.fast-sgd]\npreset = "momentum"\nlr = 0.1\n[optimizers.sgd]\n'
    )
    data = load_config(toml)
    assert data["seeds"] == 2
    configs = optimizers_from_config(data["optimizers"])
    assert [c.label for c in configs] == ["adam", "fast-sgd", "sgd"]
    assert configs[0].hyper["betas"] == (0.8, 0.9) and configs[0].lr == 0.05
    assert configs[1].preset == "momentum" and configs[1].hyper["momentum"] == 0.9 and configs[1].lr == 0.1
    js = tmp_path / "lab.json"
    js.write_text(json.dumps({"optimizers": ["sgd", "adam:lr=0.1"], "lr_grid": 3}))
    assert [c.label for c in optimizers_from_config(load_config(js)["optimizers"])] == ["sgd", "adam:lr=0.1"]
    bad = tmp_path / "bad.toml"
    bad.write_text("seeds = [")
    with pytest.raises(ValueError, match="malformed"):
        load_config(bad)
    bad.write_text("colour = 1")
    with pytest.raises(ValueError, match="unknown setting 'colour'"):
        load_config(bad)
    with pytest.raises(ValueError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")
