"""One spec grammar for problems, optimizers and schedules (optimlab.lab.spec)."""

from __future__ import annotations

import pytest

from optimlab.lab.presets import parse_optimizers
from optimlab.lab.problems import get_problem
from optimlab.lab.schedules import parse_schedule
from optimlab.lab.spec import format_spec, format_value, parse_options, parse_spec, parse_value, split_specs


def test_parse_value() -> None:
    assert parse_value("3") == 3 and parse_value("1e-3") == 1e-3 and parse_value("true") is True
    assert parse_value("0.9/0.99") == (0.9, 0.99) and parse_value("none") is None
    assert parse_value("strong_wolfe") == "strong_wolfe"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10", 10),
        ("-1.5", -1.5),
        ("1E3", 1000.0),
        (".5", 0.5),
        ("inf", float("inf")),
        ("False", False),
        ("-1/2", (-1, 2)),
        ("8/24/28", (8, 24, 28)),
        ("data/train.csv", "data/train.csv"),  # a path is text, not a tuple
        ("0.9/abc", "0.9/abc"),
        ("'1'", "1"),  # quoted: text as it stands
        ('"a,b:c=d"', "a,b:c=d"),
        ("full", "full"),
    ],
)
def test_values_are_typed_the_same_way_everywhere(text: str, value: object) -> None:
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


@pytest.mark.parametrize(
    "value",
    [True, False, None, 0, 7, -2.5, 1e-5, 0.1, 1e20, (0.9, 0.999), "full", "a,b", "1", "x=y", "it's", " x"],
)
def test_format_value_reads_back_as_the_same_value(value: object) -> None:
    assert parse_value(format_value(value)) == value


def test_canonical_forms_are_the_stored_ones() -> None:
    # the forms stored run keys were made of before the grammar was shared (tests/fixtures/pre11.db)
    assert format_spec("ravine", parse_options("condition=10", "")) == "ravine:condition=10"
    assert format_spec("booth", parse_options("noise=0.1,start=-1.5/2", "")) == "booth:noise=0.1,start=-1.5/2"
    assert format_spec("rosenbrock", parse_options("noisy", "")) == "rosenbrock:noisy=true"
    assert format_value(10.0) == "10" and format_value(1e-4) == "0.0001" and format_value(1e-05) == "1e-05"
    assert (
        parse_schedule("multistep:milestones=8/24/28,gamma=0.5").text
        == "multistep:gamma=0.5,milestones=8/24/28"
    )
    # six significant digits are not enough to tell schedules apart (the old format lost the rest)
    assert (
        parse_schedule("exponential:gamma=0.1234567").text
        != parse_schedule("exponential:gamma=0.1234568").text
    )


def test_one_grammar_for_problems_optimizers_and_schedules() -> None:
    # typed values, bare flags and quoting mean the same in all three
    assert get_problem("rosenbrock:noisy").spec == get_problem("rosenbrock:noisy=true").spec
    assert get_problem("booth:start='1/2'").start == (1.0, 2.0)  # quoted text, parsed by the problem
    (adam,) = parse_optimizers("adam:amsgrad")
    assert adam.hyper["amsgrad"] is True
    assert parse_schedule("onecycle:three_phase").params == {"three_phase": True}
    for bad in ("rosenbrock:noise=", "adam:lr=", "step:gamma="):
        with pytest.raises(ValueError, match="malformed option"):
            if bad.startswith("rosenbrock"):
                get_problem(bad)
            elif bad.startswith("adam"):
                parse_optimizers(bad)
            else:
                parse_schedule(bad)
    for twice in ("rosenbrock:noise=1,noise=2", "adam:lr=1,lr=2", "step:gamma=0.1,gamma=0.2"):
        with pytest.raises(ValueError, match="given twice"):
            parse_spec(twice)


def test_lists_continue_the_previous_spec() -> None:
    assert split_specs("sgd,adam:lr=0.01,betas=0.9/0.99,lbfgs") == [
        "sgd",
        "adam:lr=0.01,betas=0.9/0.99",
        "lbfgs",
    ]
    assert split_specs("sgd,lr=0.1") == ["sgd:lr=0.1"]
    assert split_specs("a:x='1,2',b") == ["a:x='1,2'", "b"]
    with pytest.raises(ValueError, match="before any name"):
        split_specs("lr=0.1,sgd")
    with pytest.raises(ValueError, match="empty item"):
        split_specs("sgd,,adam")
    with pytest.raises(ValueError, match="unclosed quote"):
        split_specs("a:x='1")
    with pytest.raises(ValueError, match="amsgrad=true"):
        parse_optimizers("adam:lr=0.1,amsgrad")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("step:step_size=0", "step_size must be a whole number"),
        ("cosine:T_max=0", "T_max must be a whole number"),
        ("exponential:gamma=-0.5", "lr zero or negative"),
        ("step:gamma=0", "lr zero or negative"),
        ("plateau:factor=1.5", "factor must be a factor between 0 and 1"),
        ("onecycle:pct_start=2", "pct_start must be"),
        ("multistep:milestones=0/3", "milestones must be"),
        ("warmup:start_factor=0", "start_factor must be"),
        ("onecycle:three_phase=3", "three_phase must be true or false"),
        ("lambda:1-epoch", "need ≥ 0"),
    ],
)
def test_schedule_parameters_that_cannot_work_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule(spec)
