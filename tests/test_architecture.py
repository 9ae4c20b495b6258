"""The package's shape, checked: what loads what, and that no module waits on itself.

Storage, results and reports read stored runs; they must load without the trainers (the runner, the
batched replicas) and without the optimizer engines, so that a report of a database never pays for
(or breaks on) the machinery that trained it. And no import cycle anywhere: each module can be read,
loaded and tested on its own terms.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SOURCE / "optimlab"
TRAINING = (
    "optimlab.lab.replicas",
    "optimlab.lab.runner",
    "optimlab.optim.engine",
    "optimlab.optim.engine.fused",
)


#: every module of optimlab.reports
READERS = sorted(
    ".".join(p.relative_to(SOURCE).with_suffix("").parts).removesuffix(".__init__")
    for p in (PACKAGE / "reports").rglob("*.py")
)


@pytest.mark.parametrize(
    "module",
    [
        "optimlab.lab.storage",
        "optimlab.lab.results",
        "optimlab.lab.run",
        *READERS,
    ],
)
def test_readers_load_without_the_trainers_and_engines(module: str) -> None:
    listing = "sorted(m for m in sys.modules if m.startswith('optimlab'))"
    code = f"import json, sys, {module}; print(json.dumps({listing}))"
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    )
    assert not [m for m in TRAINING if m in loaded], (
        f"importing {module} loaded {sorted(set(TRAINING) & set(loaded))}"
    )


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """Every optimlab module ``module`` imports at run time (at module level or inside functions;
    ``if TYPE_CHECKING:`` blocks excluded), ``from package import submodule`` counted as the
    submodule."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if (
            isinstance(node, ast.If)
            and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
        ):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                names.add(candidate if _exists(candidate) else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {n for n in names if n == "optimlab" or n.startswith("optimlab.")}


def _exists(module: str) -> bool:
    path = SOURCE.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def test_no_import_cycle_anywhere_in_optimlab() -> None:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        graph[module] = _runtime_imports(ast.parse(path.read_text()), module, path.name == "__init__.py") - {
            module
        }
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", ["optimlab.optim", "optimlab.lab.settings", "optimlab.lab.spec"])
def test_importing_is_light(module: str) -> None:
    """``import optimlab.optim`` costs what ``import torch`` costs: dynamo and DTensor load only when
    used (the step disables dynamo on its first call, as torch.optim's does); the settings and the
    spec grammar, which the command line checks first, load without torch."""
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = set(
        json.loads(
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
        )
    )
    heavy = {"torch._dynamo", "torch._inductor", "torch.distributed.tensor"}
    if module != "optimlab.optim":
        heavy.add("torch")
    assert not heavy & loaded, f"importing {module} loaded {sorted(heavy & loaded)}"


def test_one_run_record_for_every_trainer() -> None:
    """The step-by-step loop, the replicas (batched or alone) and the stored result share one record,
    defined beside the run spec (optimlab.lab.run): what one trainer records, the others record."""
    import dataclasses

    from optimlab.lab.loop import run_steps
    from optimlab.lab.presets import make_config
    from optimlab.lab.problems import Budget, get_problem
    from optimlab.lab.replicas import ReplicaRun, ReplicaSpec, train_replicas
    from optimlab.lab.run import RunRecord, RunResult, RunSpec, make_result
    from optimlab.lab.runner import train, train_batch

    shared = {f.name for f in dataclasses.fields(RunRecord)}
    for record in (RunResult, ReplicaRun):
        assert issubclass(record, RunRecord) and shared <= {f.name for f in dataclasses.fields(record)}
    assert run_steps.__annotations__["return"] in ("RunRecord", RunRecord)
    problem = get_problem("parabola:n=64")
    specs = [ReplicaSpec(seed, "adam", {"lr": 0.01}) for seed in (0, 1)]
    batched = train_replicas(problem, specs, epochs=2, mode="batched")
    alone = train_replicas(problem, specs, epochs=2, mode="sequential")
    for a, b in zip(batched, alone, strict=True):
        assert type(a) is type(b) is ReplicaRun and a.batched and not b.batched
        assert a.recorded().keys() == b.recorded().keys() == shared and a.wall_s > 0 and b.wall_s > 0
    # a result is the record it was made from, with what it achieved
    result = make_result(problem, make_config("adam", {"lr": 0.01}), 0, alone[0])
    assert result.recorded() == alone[0].recorded()
    adam = make_config("adam", {"lr": 0.01})
    one = train(problem, adam, 0, Budget(epochs=2))
    together = train_batch(problem, [RunSpec.of(problem, adam, s, Budget(epochs=2)) for s in (0, 1)])
    assert type(one) is RunResult and all(type(r) is RunResult for r in together)
    assert one.recorded().keys() == together[0].recorded().keys() == shared
