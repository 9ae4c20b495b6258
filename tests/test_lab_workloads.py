"""The realistic workloads (issue 14): tiny-lm, modular-addition, digits-resnet, finetune.

Each is reproducible from its seed, validates its options with one ValueError, trains (its loss
falls in a few steps), and runs where its model allows: tiny-lm and modular-addition as batched
replicas (equal to their sequential runs), digits-resnet sequentially (BatchNorm), with
Schedule-Free's BatchNorm recomputation. Tiny options keep every test fast.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from optimlab.cli import app
from optimlab.lab.executor import cut_units
from optimlab.lab.loop import BATCHNORM_BATCHES, evaluation_mode
from optimlab.lab.presets import _muon_groups, make_config, parse_optimizers
from optimlab.lab.problems import Budget, get_problem, problem_names
from optimlab.lab.problems import finetune as finetune_module
from optimlab.lab.problems.tiny_lm import VOCABULARY, token_stream
from optimlab.lab.protocol import Comparison, run_comparison
from optimlab.lab.replicas import batchable, replicas, train_replicas
from optimlab.lab.run import RunSpec
from optimlab.lab.runner import RunResult, train
from optimlab.lab.storage import Store

TINY_LM = "tiny-lm:batch=8,context=8,heads=2,layers=1,sequences=32,steps=8,width=16"
MODULAR = "modular-addition:batch=8,fraction=0.5,hidden=16,p=7,steps=6,width=8"
RESNET = "digits-resnet:width=4"
FINETUNE = "finetune:hidden=32,pretrain_epochs=5,samples=4"
WORKLOADS = (TINY_LM, MODULAR, RESNET, FINETUNE)
RTOL = 2e-5


def _parameters(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_the_workloads_are_built_in_problems_with_versions_and_budgets() -> None:
    assert {"tiny-lm", "modular-addition", "digits-resnet", "finetune"} <= set(problem_names())
    for spec in WORKLOADS:
        problem = get_problem(spec)
        assert problem.spec == spec and problem.version and math.isfinite(problem.target_loss)
        assert isinstance(problem.default_budget, Budget)
    # budgets scale with options
    assert get_problem("tiny-lm:layers=4,width=256,steps=5000").default_budget == Budget(steps=5000)
    assert get_problem("modular-addition:steps=20000").default_budget == Budget(steps=20000)
    assert get_problem("tiny-lm").default_budget == Budget(steps=400)


@pytest.mark.parametrize("spec", WORKLOADS)
def test_init_and_batches_are_reproducible_from_the_seed(spec: str) -> None:
    problem, again = get_problem(spec), get_problem(spec)
    assert all(
        torch.equal(a, b)
        for a, b in zip(_parameters(problem.build_model(3)), _parameters(again.build_model(3)), strict=True)
    )
    assert not all(
        torch.equal(a, b)
        for a, b in zip(_parameters(problem.build_model(3)), _parameters(problem.build_model(4)), strict=True)
    )
    first, second = list(problem.batches(3, 1)), list(again.batches(3, 1))
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second, strict=True)
    )
    assert len(first) == problem.steps_per_epoch
    other = list(problem.batches(4, 1))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other, strict=True))


def test_tiny_lm_text_is_the_same_on_every_machine() -> None:
    # the grammar is sampled with Python's random.Random(str): pinned here, so that a change of
    # the grammar (which must bump the problem's version) cannot pass unnoticed
    text = " ".join(VOCABULARY[i] for i in token_stream(16, 0, "train"))
    assert text == "this bird that waits watches a dog . every bird near the robots waits . this"
    problem = get_problem(TINY_LM)
    assert problem.x.shape == (32, 8) and problem.y.shape == (32, 8) and problem.x_val.shape == (8, 8)
    assert torch.equal(problem.x[:, 1:], problem.y[:, :-1])  # targets are the next tokens
    assert not torch.equal(problem.x[:8], problem.x_val)  # validation comes from its own stream


def test_modular_addition_splits_the_whole_table() -> None:
    problem = get_problem("modular-addition:p=11,fraction=0.4")
    pairs = torch.cat([problem.x, problem.x_val])
    assert len(problem.x) == round(0.4 * 121) and len(pairs) == 121
    assert len({tuple(p) for p in pairs.tolist()}) == 121
    for x, y in ((problem.x, problem.y), (problem.x_val, problem.y_val)):
        assert torch.equal(y, (x[:, 0] + x[:, 1]) % 11)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tiny-lm:width=30,heads=4", "divisible by heads"),
        ("tiny-lm:layers=0", "layers must be a whole number"),
        ("tiny-lm:steps=1.5", "steps must be a whole number"),
        ("tiny-lm:dropout=0.1", "has no option 'dropout'"),
        ("modular-addition:fraction=1", r"fraction must be a number in \(0, 1\)"),
        ("modular-addition:fraction=abc", "fraction must be a number"),
        ("modular-addition:p=1", "p must be a whole number ≥ 2"),
        ("modular-addition:p=2,fraction=0.1", "empty training or validation set"),
        ("digits-resnet:width=0", "width must be a whole number"),
        ("digits-resnet:depth=3", "has no option 'depth'"),
        ("finetune:shift=mirror", "shift must be one of rotate, relabel, permute"),
        ("finetune:samples=1000", "samples must be at most"),
        ("finetune:pretrain_epochs=-1", "pretrain_epochs must be a whole number ≥ 0"),
    ],
)
def test_bad_options_are_one_clear_value_error(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_problem(spec)


@pytest.mark.parametrize("spec", WORKLOADS)
def test_each_workload_trains(spec: str) -> None:
    problem = get_problem(spec)
    result = train(problem, make_config("adam", {"lr": 0.01}), 0, Budget(steps=12))
    assert not result.diverged and result.steps == 12
    assert result.final_loss < result.evals[0]["loss"]
    assert {"loss", "val_loss", "val_accuracy"} <= set(result.final_metrics)


def test_tiny_lm_batches_and_gives_muon_its_hidden_matrices_only() -> None:
    problem = get_problem(TINY_LM)
    model = problem.build_model(0)
    assert batchable(problem) and not list(model.buffers())
    output = model(problem.x[:2])
    assert output.shape == (2, len(VOCABULARY), 8)  # [batch, vocab, time]: cross_entropy's layout
    # causal: a later token does not change an earlier position's logits
    changed = problem.x[:1].clone()
    changed[0, -1] = (changed[0, -1] + 1) % len(VOCABULARY)
    torch.testing.assert_close(model(changed)[..., :-1], model(problem.x[:1])[..., :-1])
    muon, adamw = _muon_groups("muon", list(model.parameters()))
    embeddings = {id(model.token.weight), id(model.position), id(model.head.weight)}
    assert not embeddings & {id(p) for p in muon["params"]} and embeddings <= {id(p) for p in adamw["params"]}
    assert all(p.ndim == 2 for p in muon["params"]) and len(muon["params"]) == 4  # qkv, out, 2 MLP


def _stored(path: Path, comparison: Comparison, mode: str) -> dict[str, RunResult]:
    with Store(path) as store:
        run_comparison(comparison, store, replicas=mode)  # type: ignore[arg-type]
        return {run.key: run.result for run in store.runs()}


def test_an_lr_grid_times_seeds_is_one_batched_run_equal_to_the_sequential_runs(tmp_path: Path) -> None:
    problems = [get_problem(TINY_LM), get_problem(MODULAR)]
    comparison = Comparison(problems=problems, optimizers=parse_optimizers("adamw,lion"), seeds=2, lr_grid=2)
    # the lr grid × seeds of each problem is one unit: one batched run
    configs = [c.with_hyper(lr=lr) for c in comparison.optimizers for lr in (1e-3, 1e-2)]
    for problem in problems:
        runs = [RunSpec.of(problem, c, s, problem.default_budget) for c in configs for s in range(2)]
        assert [len(unit) for unit in cut_units(runs, {problem.spec: problem})] == [8]
    sequential = _stored(tmp_path / "off.db", comparison, "off")
    batched = _stored(tmp_path / "auto.db", comparison, "auto")
    assert batched.keys() == sequential.keys() and len(batched) == 2 * 2 * 2 * 2
    for key, seq in sequential.items():
        run = batched[key]
        assert run.extra.get("batched") and "batched" not in seq.extra
        assert (run.diverged, run.steps) == (seq.diverged, seq.steps)
        assert run.losses == pytest.approx(seq.losses, rel=RTOL, abs=1e-6)
        for ours, theirs in zip(run.evals, seq.evals, strict=True):
            assert ours.keys() == theirs.keys()
            for metric in ours.keys() - {"wall_s"}:
                assert ours[metric] == pytest.approx(theirs[metric], rel=RTOL, abs=1e-6), (key, metric)


def test_digits_resnet_cannot_batch_and_trains_sequentially() -> None:
    problem = get_problem(RESNET)
    assert not batchable(problem) and list(problem.build_model(0).buffers())
    runs = train_replicas(problem, replicas("adam", [0, 1], {"lr": 0.01}), steps=3)
    assert [run.batched for run in runs] == [False, False] and all(run.steps == 3 for run in runs)
    with pytest.raises(ValueError, match="cannot be batched"):
        train_replicas(problem, replicas("adam", [0, 1]), steps=3, mode="batched")


def test_digits_resnet_evaluates_in_eval_mode_without_touching_its_statistics() -> None:
    problem = get_problem(RESNET)
    model = problem.build_model(0)
    for inputs, _ in itertools.islice(problem.batches(0, 0), 3):
        model(inputs)  # running statistics move away from their initial values
    before = [b.clone() for b in model.buffers()]
    metrics = problem.evaluate(model)
    assert model.training and all(torch.equal(a, b) for a, b in zip(before, model.buffers(), strict=True))
    model.eval()
    expected = nn.functional.cross_entropy(model(problem.x), problem.y)
    assert metrics["loss"] == pytest.approx(float(expected.detach()), rel=1e-6)


def test_schedule_free_on_digits_resnet_recomputes_batchnorm_at_the_averaged_weights() -> None:
    problem = get_problem(RESNET)
    model = problem.build_model(0)
    optimizer = make_config("adamw-schedulefree", {"lr": 0.01}).build(list(model.parameters()))
    optimizer.train()
    for inputs, target in itertools.islice(problem.batches(0, 0), 5):
        optimizer.zero_grad()
        problem.loss(model(inputs), target).backward()
        optimizer.step()
    trained = copy.deepcopy(model)  # at y, with the statistics gathered while training
    with evaluation_mode(optimizer, model, problem, 0, 0):
        averaged = _parameters(model)
        assert not all(torch.equal(a, b) for a, b in zip(averaged, _parameters(trained), strict=True))
        metrics = problem.evaluate(model)
        recomputed = [b.clone() for b in model.buffers()]
    # the same by hand: the averaged weights x, then forward passes over the epoch's batches
    expected = copy.deepcopy(trained)
    with torch.no_grad():
        for p, value in zip(expected.parameters(), averaged, strict=True):
            p.copy_(value)
        for inputs, _ in itertools.islice(problem.batches(0, 0), BATCHNORM_BATCHES):
            expected(inputs)
    for ours, theirs, old in zip(recomputed, expected.buffers(), trained.buffers(), strict=True):
        torch.testing.assert_close(ours, theirs)
        if ours.is_floating_point():
            assert not torch.equal(ours, old)
    assert metrics["loss"] == pytest.approx(problem.evaluate(expected)["loss"], rel=1e-5)
    assert model.training  # back to training, at y (the switch is arithmetic: equal up to rounding)
    for ours, theirs in zip(_parameters(model), _parameters(trained), strict=True):
        torch.testing.assert_close(ours, theirs)


def test_finetune_pretrains_once_per_seed_and_fine_tunes_a_new_head() -> None:
    problem = get_problem(FINETUNE)
    finetune_module._PRETRAINED.clear()
    first = problem.build_model(5)
    assert len(finetune_module._PRETRAINED) == 1
    again = get_problem(FINETUNE).build_model(5)  # cached: not pre-trained again
    assert len(finetune_module._PRETRAINED) == 1
    assert all(torch.equal(a, b) for a, b in zip(_parameters(first), _parameters(again), strict=True))
    assert batchable(problem)
    # pre-training learned the original digits: its own head classifies them
    weights = finetune_module.pretrained_weights(32, 5, 0, 5)
    pretrained = finetune_module._mlp(32)
    pretrained.load_state_dict(weights)
    with torch.no_grad():
        accuracy = (pretrained(problem.x_source).argmax(dim=1) == problem.y_source).float().mean()
    assert accuracy > 0.8
    # the fine-tuned model has the pre-trained body and a new head of its own
    body = [k for k in weights if not k.startswith("4.")]
    assert all(torch.equal(first.state_dict()[k], weights[k]) for k in body)
    assert not torch.equal(first[-1].weight, weights["4.weight"])
    assert not torch.equal(first[-1].weight, problem.build_model(6)[-1].weight)


def test_finetune_shifts_inputs_or_labels() -> None:
    rotate, relabel, permute = (
        get_problem(f"finetune:samples=2,shift={s}") for s in ("rotate", "relabel", "permute")
    )
    source = rotate.x_source
    assert torch.equal(relabel.x_val, source) and not torch.equal(relabel.y_val, rotate.y_val)
    assert bool((relabel.y_val != rotate.y_val).all())  # a derangement: every class moves
    assert torch.equal(rotate.y_val, permute.y_val)
    assert torch.equal(torch.sort(permute.x_val, dim=1).values, torch.sort(source, dim=1).values)
    assert torch.equal(torch.rot90(source.view(-1, 8, 8), 1, dims=(1, 2)).reshape(-1, 64), rotate.x_val)


def test_compare_runs_the_modern_presets_on_tiny_lm(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "compare",
            "-p",
            TINY_LM,
            "-o",
            "adamw,lion,muon,adamw-schedulefree",
            "--seeds",
            "1",
            "--steps",
            "4",
            "--jobs",
            "1",
            "--db",
            str(tmp_path / "lab.db"),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    entries = summary["problems"][TINY_LM]["optimizers"]
    assert set(entries) == {"adamw", "lion", "muon", "adamw-schedulefree"}
    assert all(math.isfinite(entry["final_loss"]["median"]) for entry in entries.values())
