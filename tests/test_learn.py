"""``optimlab learn``: the course's framework (list, one demonstration, --all, --json, --lang) and the
headline numbers of each demonstration, asserted against what its verdict says."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from learn_cases import SEEDS
from optimlab import learn
from optimlab.cli import app
from optimlab.learn.demo import Claim, Demo, Text, Verdict

runner = CliRunner()


def test_the_list_names_every_demonstration_and_its_seed_post() -> None:
    result = runner.invoke(app, ["learn"])
    assert result.exit_code == 0, result.output
    for demo in learn.demonstrations().values():
        assert demo.name in result.stdout
    assert "guide" in result.stdout
    listed = json.loads(runner.invoke(app, ["learn", "--json"]).stdout)
    assert list(listed) == learn.demo_names() and listed["ewa"]["title"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["learn", "nope"], "unknown demonstration 'nope'; demonstrations: ewa"),
        (["learn", "ewa", "--all"], "give a demonstration's name or --all, not both"),
        (["learn", "ewa", "--lang", "fr"], "fr"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in result.output


def test_every_demonstration_is_well_formed() -> None:
    orders = [d.order for d in learn.demonstrations().values()]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    for demo in learn.demonstrations().values():
        assert demo.claims and all(isinstance(c, Claim) and c.post[:3].isdigit() for c in demo.claims)
        # quoted as written (a sentence or a line of code; tested verbatim where the posts are), translated
        assert all(
            c.quote.strip() and c.translation.strip() and c.quote != c.translation for c in demo.claims
        )
    with pytest.raises(ValueError, match="needs its correction and a reference"):
        Verdict(Claim("000_x.txt", "说法", "a claim"), "wrong", Text("e", "证据"))
    with pytest.raises(ValueError, match="both an English and a Chinese"):
        Text("only English", "")
    with pytest.raises(ValueError, match="checks no claim"):
        Demo("x", 99, Text("t", "题"), Text("s", "述"), (), lambda: None)  # type: ignore[arg-type,return-value]


def test_a_demonstration_writes_its_page_and_png_in_both_languages(tmp_path: Path) -> None:
    english = runner.invoke(app, ["learn", "ewa", "--out", str(tmp_path)])
    assert english.exit_code == 0, english.output
    page = (tmp_path / "learn-ewa.html").read_text(encoding="utf-8")
    assert '<html lang="en">' in page and "β 的值越大,则绘制出的折线越加平缓" in page
    assert "The larger β, the smoother the line" in page and "only partly true" in page
    assert (tmp_path / "figures" / "learn-ewa-1.png").stat().st_size > 10_000
    chinese = runner.invoke(app, ["learn", "ewa", "--lang", "zh", "--out", str(tmp_path / "zh"), "--no-png"])
    assert chinese.exit_code == 0, chinese.output
    page = (tmp_path / "zh" / "learn-ewa.html").read_text(encoding="utf-8")
    assert '<html lang="zh">' in page and "指数加权平均" in page and "部分成立" in page
    assert "The larger β" not in page and not (tmp_path / "zh" / "figures").exists()


def test_the_course_page_holds_every_demonstration(tmp_path: Path) -> None:
    result = runner.invoke(app, ["learn", "--all", "--out", str(tmp_path), "--no-png"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "learn.html").read_text(encoding="utf-8")
    for demo in learn.demonstrations().values():
        assert html.escape(demo.title("en")) in page
    numbers = json.loads(runner.invoke(app, ["learn", "--all", "--json", "--out", str(tmp_path)]).stdout)
    assert list(numbers) == learn.demo_names()


# --- ewa ---------------------------------------------------------------------------------------


def test_ewa_smooths_lags_and_needs_bias_correction_from_zero(tmp_path: Path) -> None:
    result = runner.invoke(app, ["learn", "ewa", "--json", "--no-png", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout)
    assert numbers == json.loads(json.dumps(learn.run("ewa").numbers))  # the CLI and Python agree
    rough, first = numbers["roughness"], numbers["first_day"]
    assert rough["raw"] > rough["0.5"] > rough["0.9"] > rough["0.98"]  # smoother with β
    assert numbers["window"] == pytest.approx({"0.5": 2, "0.9": 10, "0.98": 50})
    for beta, lag in numbers["lag"].items():  # lags more with β: ⌈ln ½ / ln β⌉ days to half a step
        assert lag == math.ceil(math.log(0.5) / math.log(float(beta)))
    for beta in ("0.5", "0.9", "0.98"):  # started at zero: (1 − β)·y₁; corrected: y₁ itself
        assert numbers["first_value"]["uncorrected"][beta] == pytest.approx(
            (1 - float(beta)) * first, rel=1e-5
        )
        assert numbers["first_value"]["corrected"][beta] == pytest.approx(first, rel=1e-5)
    assert first == pytest.approx(-11.2584, abs=1e-4)  # seed 002's first day (torch.manual_seed(0))
    # the "post" curve is seed 002's own loop (test02), taken literally
    from optimlab.learn.demos.ewa import averages, temperatures

    temperature = temperatures()
    for beta in (0.5, 0.9, 0.98):
        exp_weight_avg = []
        for idx, temp in enumerate(temperature, 1):
            if idx == 1:
                exp_weight_avg.append(temp)
                continue
            exp_weight_avg.append(exp_weight_avg[idx - 2] * beta + (1 - beta) * temp)
        post = averages(temperature, beta)["post"]
        assert post == pytest.approx([float(v) for v in exp_weight_avg], rel=1e-5, abs=1e-5)
    kinds = [v.kind for v in learn.run("ewa").verdicts]
    assert kinds == ["partly", "confirmed"]  # smoother but lagging; the post's start is a valid one


# --- the optimizer guide ---------------------------------------------------------------------------


def test_the_guide_reads_formulas_defaults_and_memory_off_the_code(tmp_path: Path) -> None:
    import torch

    from optimlab.learn.guide import GUIDE, entries

    found = {e.name: e for e in entries()}
    assert list(found) == list(GUIDE)
    for name, entry in found.items():
        torch_cls = getattr(torch.optim, name)
        signature = __import__("inspect").signature(torch_cls.__init__).parameters
        for key, value in entry.defaults.items():
            if key in signature:
                assert signature[key].default == value, (name, key)  # torch's defaults, read off the class
        assert entry.summary and entry.formula
        assert set(entry.notes.demos) <= set(learn.demo_names()), name  # each a demonstration that shows it
    assert (
        found["Adam"].state == {"exp_avg": 4, "exp_avg_sq": 4}
        and "m ← β₁m + (1 − β₁)g" in found["Adam"].formula
    )
    assert found["SGD"].state == {"momentum_buffer": 4} and found["AdamW"].defaults["weight_decay"] == 0.01
    assert "s ← s + g²" in found["Adagrad"].formula and "Duchi" in found["Adagrad"].references
    assert found["LBFGS"].state["old_dirs + old_stps (full history)"] == 2 * 100 * 4
    demos = set(learn.demo_names())
    assert "ewa" in demos  # the guide's links name demonstrations of the course (more join as they land)
    result = runner.invoke(app, ["learn", "guide", "--lang", "zh", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "learn-guide.html").read_text(encoding="utf-8")
    assert "优化器指南" in page and "擅长" in page and "Kingma &amp; Ba" in page
    as_json = json.loads(runner.invoke(app, ["learn", "guide", "--json", "--out", str(tmp_path)]).stdout)
    assert as_json["Adam"]["defaults"]["lr"] == 0.001 and as_json["Adam"]["state_bytes"]["exp_avg"] == 4


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the seed posts are not beside the repository")
def test_every_quote_is_the_seed_posts_own_words() -> None:
    for demo in learn.demonstrations().values():
        for claim in demo.claims:
            assert claim.quote in (SEEDS / claim.post).read_text(encoding="utf-8"), (demo.name, claim.quote)
