"""The Ray executor (``optimlab compare --executor ray``): the same stored runs as the local executor,
a worker killed mid-unit loses nothing, a user's problem that raises is the same one line, Optuna's
trials train on the workers, and the command line's option errors are one line with exit code 2.

One local Ray (two CPUs) serves the module; a slow test runs a ``ray start --head`` on 127.0.0.1
with a second node, joins it with ``--address`` and stops both by their process ids."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from optimlab.cli import app
from optimlab.lab.presets import parse_optimizers
from optimlab.lab.problems import Budget, ProblemError, get_problem
from optimlab.lab.protocol import Comparison, RunEvent, run_comparison
from optimlab.lab.ray_executor import (
    RAY_HINT,
    RayClusterError,
    RayExecutor,
    check_address,
    code_runtime_env,
)
from optimlab.lab.storage import Store

ray = pytest.importorskip("ray")
runner = CliRunner()

USER_PROBLEMS = """
import os
import signal
from pathlib import Path

import torch
from torch import nn
from optimlab.lab.problems import Budget, TensorProblem

#: a worker of DiesOnce kills itself when this file is missing (and writes its pid into it first)
MARKER = Path(__file__).with_name("died-once")

class Line(TensorProblem):
    name, description, target_loss = "line", "fit y = 3x", 1e-3
    default_budget = Budget(epochs=3)

    def __init__(self):
        super().__init__({})
        self.x = torch.linspace(-1, 1, 32).unsqueeze(1)
        self.y = 3 * self.x
        self.batch_size = 8

    def make_model(self):
        return nn.Linear(1, 1)

    def loss(self, output, target):
        return nn.functional.mse_loss(output, target)

class DiesOnce(Line):
    calls_without_marker = 0  # a worker keeps its problems from unit to unit

    def loss(self, output, target):
        if not MARKER.exists():
            self.calls_without_marker += 1
            if self.calls_without_marker >= 5:  # mid-unit: after a few steps
                MARKER.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
        return super().loss(output, target)

class BadLoss(Line):
    def loss(self, output, target):
        with open(Path(__file__).with_name("bad-loss-calls"), "a") as calls:
            calls.write(f"{os.getpid()}\\n")
        raise RuntimeError("loss exploded on purpose")  # BAD LOSS

def make_line():
    return Line()

def make_dies_once():
    return DiesOnce()

def make_bad_loss():
    return BadLoss()
"""


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ray_user")
    (folder / "ray_user_problems.py").write_text(USER_PROBLEMS)
    return folder


@pytest.fixture(scope="module")
def cluster(user_folder: Path) -> Iterator[Path]:
    """A local Ray of two CPUs for the module, started from ``user_folder`` (Ray puts the driver's
    working directory on the workers' path, as for ``optimlab compare`` run from a project),
    shipping this optimlab as the executor does; shut down at the end."""
    if ray.is_initialized():  # pragma: no cover - another module left one behind
        ray.shutdown()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(user_folder)
        ray.init(
            address="local",
            num_cpus=2,
            runtime_env=code_runtime_env(),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            logging_level=logging.ERROR,
        )
    try:
        yield user_folder
    finally:
        ray.shutdown()


@pytest.fixture
def in_user_folder(cluster: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(cluster))
    monkeypatch.chdir(cluster)
    monkeypatch.delitem(sys.modules, "ray_user_problems", raising=False)
    (cluster / "died-once").unlink(missing_ok=True)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers: the same numbers
    yield cluster
    torch.set_num_threads(previous)


def stored(db: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every stored run: key → (its spec, its result without the wall-clock times)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT key, spec, result FROM runs").fetchall()
    runs = {}
    for key, spec, result in rows:
        data = json.loads(result)
        data.pop("wall_s")
        for evaluation in data["evals"]:
            evaluation.pop("wall_s")
        runs[key] = (spec, data)
    return runs


def compare(problems: list[str], optimizers: str, db: Path, executor: Any = None, **settings: Any) -> str:
    comparison = Comparison(
        problems=[get_problem(spec) for spec in problems],
        optimizers=parse_optimizers(optimizers, "seed"),
        **settings,
    )
    with Store(db) as store:
        if executor is None:
            return run_comparison(comparison, store)
        return run_comparison(comparison, store, executor=executor(comparison))


def on_ray(comparison: Comparison, **options: Any) -> RayExecutor:
    return RayExecutor({p.spec: p for p in comparison.problems}, **options)


def test_a_comparison_on_ray_stores_what_the_local_executor_stores(
    in_user_folder: Path, tmp_path: Path
) -> None:
    problems = ["parabola:n=64", "ray_user_problems:make_line"]
    settings = {"seeds": 2, "budget": Budget(epochs=1)}
    local = compare(problems, "sgd,adam,lbfgs", tmp_path / "local.db", **settings)
    remote = compare(problems, "sgd,adam,lbfgs", tmp_path / "ray.db", on_ray, **settings)
    assert remote == local
    runs = stored(tmp_path / "ray.db")
    assert len(runs) == 2 * 3 * 2 and runs == stored(tmp_path / "local.db")
    with Store(tmp_path / "local.db") as a, Store(tmp_path / "ray.db") as b:
        assert a.comparison(local)[1:] == b.comparison(remote)[1:]  # the same plan and settings


def test_a_worker_killed_mid_unit_loses_nothing(in_user_folder: Path, tmp_path: Path) -> None:
    marker = in_user_folder / "died-once"
    problems = ["ray_user_problems:make_dies_once"]
    marker.write_text("no death here")  # the local reference trains in this process
    compare(problems, "sgd,adam", tmp_path / "local.db", seeds=2)
    marker.unlink()
    compare(problems, "sgd,adam", tmp_path / "ray.db", on_ray, seeds=2)
    died = int(marker.read_text())  # a worker died mid-unit: the unit was trained again
    assert died != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(died, 0)
    runs = stored(tmp_path / "ray.db")
    assert len(runs) == 4 and runs == stored(tmp_path / "local.db")


def test_a_unit_lost_more_often_than_retries_allow_is_one_error_and_keeps_the_stored_runs(
    in_user_folder: Path,
    tmp_path: Path,
) -> None:
    db = tmp_path / "lost.db"
    compare(["ray_user_problems:make_line"], "sgd", db, seeds=1)
    before = stored(db)
    with pytest.raises(
        RayClusterError, match=r"was lost 1 time\(s\) with its worker .* run the same command"
    ):
        options = {"max_retries": 0}
        compare(["ray_user_problems:make_dies_once"], "sgd", db, lambda c: on_ray(c, **options), seeds=1)
    assert stored(db) == before


def test_a_users_problem_that_raises_is_the_same_problem_error_and_is_not_retried(
    in_user_folder: Path,
    tmp_path: Path,
) -> None:
    problems = ["ray_user_problems:make_bad_loss"]
    with pytest.raises(ProblemError) as local:
        compare(problems, "sgd", tmp_path / "local.db", seeds=1)
    calls = in_user_folder / "bad-loss-calls"
    calls.unlink()
    with pytest.raises(ProblemError) as remote:
        compare(problems, "sgd", tmp_path / "ray.db", on_ray, seeds=1)
    assert len(calls.read_text().split()) == 1  # raised once, on a worker: not trained again
    assert str(remote.value) == str(local.value)
    assert "RuntimeError: loss exploded on purpose (ray_user_problems.py:" in str(remote.value)
    assert "Traceback" in str(remote.value.__cause__)
    assert stored(tmp_path / "ray.db") == {}


def test_workers_with_other_code_than_the_driver_are_refused(
    in_user_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optimlab.lab.ray_executor as ray_executor

    monkeypatch.setattr(ray_executor, "code_fingerprint", lambda: "torch 0.0, optimlab sources 0")
    with pytest.raises(RayClusterError, match=r"runs torch .* this driver torch 0\.0"):
        compare(["parabola:n=64"], "sgd", tmp_path / "ray.db", on_ray, seeds=1)


def test_a_driver_stopped_mid_sweep_resumes_from_the_database(in_user_folder: Path, tmp_path: Path) -> None:
    comparison = Comparison(
        problems=[get_problem("parabola:n=64")], optimizers=parse_optimizers("sgd,adam", "seed"), seeds=3
    )
    with Store(tmp_path / "local.db") as store:
        run_comparison(comparison, store, replicas="off")  # one unit a run: stopped between units
    done: list[str] = []

    def stop_after_two(event: RunEvent) -> None:
        if event.kind == "done":
            assert event.run is not None
            done.append(event.run.key)
            if len(done) == 2:
                raise KeyboardInterrupt  # the driver stops with units still on the cluster

    with Store(tmp_path / "ray.db") as store, pytest.raises(KeyboardInterrupt):
        run_comparison(
            comparison, store, replicas="off", executor=on_ray(comparison), progress=stop_after_two
        )
    assert set(stored(tmp_path / "ray.db")) == set(done)  # what finished, and nothing else
    events: list[str] = []

    def done_or_reused(event: RunEvent) -> None:
        if event.kind != "planned":
            events.append(event.kind)

    with Store(tmp_path / "ray.db") as store:
        run_comparison(
            comparison, store, replicas="off", executor=on_ray(comparison), progress=done_or_reused
        )
    assert stored(tmp_path / "ray.db") == stored(tmp_path / "local.db")
    assert sorted(events) == sorted(["done"] * 4 + ["reused"] * 2)


def test_optuna_tuning_asks_in_the_driver_and_trains_on_the_workers(
    in_user_folder: Path, tmp_path: Path
) -> None:
    settings = {"seeds": 2, "tune": "optuna", "trials": 3, "budget": Budget(epochs=1)}
    local = compare(["parabola:n=64"], "sgd,adam", tmp_path / "local.db", **settings)
    remote = compare(["parabola:n=64"], "sgd,adam", tmp_path / "ray.db", on_ray, **settings)
    runs = stored(tmp_path / "ray.db")
    assert len(runs) == 2 * 3 + 2 * 2 and runs == stored(tmp_path / "local.db")
    with Store(tmp_path / "local.db") as a, Store(tmp_path / "ray.db") as b:
        assert a.comparison(local)[2] == b.comparison(remote)[2]  # the same trials and choices


# --- the command line ------------------------------------------------------------------------------

SMALL = ["-p", "parabola:n=64", "-o", "sgd,adam", "--seeds", "2", "--epochs", "1", "--no-png"]


def test_compare_executor_ray_stores_what_the_local_executor_stores(
    in_user_folder: Path, tmp_path: Path
) -> None:
    paths = {
        name: ["--db", str(tmp_path / f"{name}.db"), "--out", str(tmp_path / name)]
        for name in ("local", "ray")
    }
    local = runner.invoke(app, ["compare", *SMALL, "--jobs", "1", *paths["local"]])
    assert local.exit_code == 0, local.output
    remote = runner.invoke(app, ["compare", *SMALL, "--executor", "ray", *paths["ray"]])
    assert remote.exit_code == 0, remote.output
    said = " ".join(remote.stdout.split())
    assert "4 runs trained, 0 reused" in said and "(on the Ray this process had joined (2 CPUs))" in said, (
        said
    )
    assert stored(tmp_path / "ray.db") == stored(tmp_path / "local.db")


def one_line_exit_2(result: Any, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in result.stderr, result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--address", "127.0.0.1:6379"], ["--address is the Ray cluster's", "--executor ray"]),
        (["--executor", "ray", "--address", "nowhere"], ["--address must be HOST:PORT", "'nowhere'"]),
        (["--executor", "ray", "--address", "head:99999"], ["--address must be HOST:PORT"]),
        (
            ["--executor", "ray", "--address", "127.0.0.1:{free}"],
            ["no Ray cluster answers at", "ray start --head"],
        ),
        (["--executor", "spark"], ["Invalid value for '--executor'"]),
    ],
)
def test_compare_executor_option_errors_are_one_line(
    tmp_path: Path, options: list[str], words: list[str]
) -> None:
    options = [o.replace("{free}", str(_free_port())) for o in options]
    db = tmp_path / "lab.db"
    result = runner.invoke(app, ["compare", *SMALL, *options, "--db", str(db), "--out", str(tmp_path)])
    if options == ["--executor", "spark"]:  # typer's own message about a choice
        assert result.exit_code == 2 and all(w in result.output for w in words), result.output
    else:
        one_line_exit_2(result, *words)
    assert not db.exists()  # refused before anything was created


def test_compare_executor_ray_without_ray_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    args = ["compare", *SMALL, "--executor", "ray", "--db", str(tmp_path / "lab.db"), "--out", str(tmp_path)]
    one_line_exit_2(runner.invoke(app, args), RAY_HINT)
    with pytest.raises(ValueError, match=r"pip install 'optimlab\[ray\]'"):
        RayExecutor({}).connect()


def test_a_process_joined_to_one_cluster_cannot_join_another(cluster: Path) -> None:
    with socket.socket() as server:  # something answers at the address
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(RayClusterError, match="has joined a Ray cluster already"):
            RayExecutor({}, address).connect()


def test_check_address() -> None:
    for good in ("127.0.0.1:6379", "head.example.org:10001", "ray://10.0.0.1:10001", "auto", "[::1]:6379"):
        assert check_address(good) == good
    for bad in ("", "6379", "host:", "host:port", "host:0", "host:70000", "a b:1"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            check_address(bad)
    with pytest.raises(ValueError, match="num_cpus is for a local Ray"):
        RayExecutor({}, "127.0.0.1:6379", num_cpus=2)


def test_the_code_shipped_is_optimlab_and_the_users_problem_modules(
    user_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optimlab

    monkeypatch.syspath_prepend(str(user_folder))
    monkeypatch.chdir(user_folder)
    monkeypatch.delitem(sys.modules, "ray_user_problems", raising=False)
    env = code_runtime_env([get_problem("parabola"), get_problem("ray_user_problems:make_line")])
    assert env["py_modules"] == [
        str(Path(optimlab.__file__).resolve().parent),
        str((user_folder / "ray_user_problems.py").resolve()),
    ]


# --- a cluster of two nodes --------------------------------------------------------------------------


def _ray_start(*args: str) -> subprocess.Popen[bytes]:
    """``ray start --block ARGS``: its Ray processes stop with it (SIGTERM to its pid). The nodes
    get no PYTHONPATH: their workers train with the optimlab the driver ships."""
    command = [str(Path(sys.executable).with_name("ray")), "start", "--block", "--disable-usage-stats", *args]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    return subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:  # pragma: no cover - its whole group, by its id
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.slow
def test_compare_on_a_ray_start_head_cluster_with_a_worker_node(tmp_path: Path) -> None:
    port = _free_port()
    address = f"127.0.0.1:{port}"
    node = ["--node-ip-address=127.0.0.1", "--num-cpus=1"]
    head = _ray_start("--head", f"--port={port}", "--include-dashboard=false", *node)
    worker = None
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline, "the head did not start"
                time.sleep(0.5)
        worker = _ray_start(f"--address={address}", *node)
        (tmp_path / "ray_user_problems.py").write_text(USER_PROBLEMS)
        args = ["-m", "optimlab", "compare", "-p", "parabola:n=64", "-p", "ray_user_problems:make_line"]
        args += ["-o", "sgd,adam,lbfgs", "--seeds", "2", "--epochs", "1", "--no-png"]
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and Path(p).is_dir())
        executors = {
            "local": ["--jobs", "1"],
            "own-ray": ["--executor", "ray", "--jobs", "2"],  # a local Ray of its own, stopped after
            "ray": ["--executor", "ray", "--address", address],
        }
        for name, extra in executors.items():
            result = subprocess.run(
                [sys.executable, *args, *extra, "--db", f"{name}.db", "--out", name],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert result.returncode == 0, result.stdout + result.stderr
            said = " ".join(result.stdout.split())
            assert "12 runs trained" in said, said
        assert re.search(rf"on the Ray cluster at {address} \([12] CPUs\)", said), (
            said
        )  # the node may join late
        runs = stored(tmp_path / "ray.db")
        assert len(runs) == 2 * 3 * 2 and runs == stored(tmp_path / "local.db") == stored(
            tmp_path / "own-ray.db"
        )
    finally:
        for process in (worker, head):
            if process is not None:
                _stop(process)
