"""The Ray executor: a comparison's units of runs trained as Ray tasks, on a cluster or a local Ray.

:class:`RayExecutor` implements :class:`optimlab.lab.executor.Executor`: each unit
(:func:`~optimlab.lab.executor.cut_units`) is one Ray task (one CPU) running the same
:func:`~optimlab.lab.executor.train_unit` as the local executor, and each unit's results come back
to the driver as soon as it finishes; the driver alone writes the store, so what is stored, resume
and the report do not depend on where runs trained.

* Where: ``address=None`` starts a private local Ray (``num_cpus`` CPUs); ``"HOST:PORT"`` joins
  the cluster of a ``ray start --head --port=PORT`` (``"auto"``: the one ``ray start`` left on
  this machine; ``"ray://HOST:PORT"``: through Ray Client). A Ray already connected in this
  process (``ray.init`` by the caller) is used as it is and left connected.
* Code: when it connects, the executor ships this process's ``optimlab`` package and the modules
  of user problems (``module:factory`` specs) that are not installed packages to the workers
  (Ray's ``runtime_env`` ``py_modules``), so workers train with the driver's code; they need the
  same torch (and numpy) installed. Every task checks that its worker runs the driver's code
  (torch version and a hash of optimlab's sources) and refuses otherwise.
* Failures: a unit whose worker process or node dies is retried (Ray's ``max_retries``, default
  3); a user's problem that raises ends the sweep with the same
  :class:`~optimlab.lab.problems.ProblemError` as locally (never retried: it would raise again).
  A unit lost more often than that ends the sweep with one :class:`RayClusterError` line; every
  run stored so far is kept, and the same command resumes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import logging
import socket
import sysconfig
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from optimlab.lab.executor import _WORKER_PROBLEMS, Unit, train_unit
from optimlab.lab.problems import Problem, ProblemError, UserProblem, get_problem
from optimlab.lab.replicas import DEFAULT_MEMORY_BUDGET
from optimlab.lab.run import RunResult

#: what to install when Ray is missing
RAY_HINT = "the Ray executor needs Ray: pip install 'optimlab[ray]'"
#: seconds to wait for a cluster's address to answer before giving up
CONNECT_TIMEOUT = 10.0


class RayClusterError(ValueError):
    """The cluster cannot train the comparison: an address that does not answer, workers that run
    other code than the driver, a unit lost with its worker more often than retries allow. One
    line; the runs stored so far are kept."""


def require_ray() -> Any:
    """The ``ray`` module, or one ``ValueError`` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ValueError(RAY_HINT) from None
    return ray


def check_address(address: str) -> str:
    """``address`` if it names a cluster (``HOST:PORT``, ``ray://HOST:PORT`` or ``auto``), else one
    ``ValueError``."""
    if address == "auto":
        return address
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c.isspace() for c in host):
        raise ValueError(f"--address must be HOST:PORT (a `ray start --head` node), got {address!r}")
    return address


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """One ``RayClusterError`` line when nothing answers at ``address`` (Ray itself would wait for
    minutes)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise RayClusterError(
            f"no Ray cluster answers at {address!r}: {reason} (start one with `ray start --head "
            f"--port={port}` on that machine)"
        ) from None


@functools.cache
def code_fingerprint() -> str:
    """What the numbers of a run depend on besides its spec: the torch version and a hash of
    optimlab's Python sources (the same on the driver and on every worker, or the runs differ)."""
    import torch

    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"torch {torch.__version__}, optimlab sources {digest.hexdigest()[:12]}"


def _installed(path: Path) -> bool:
    """Whether ``path`` lies in an installed-packages folder (the workers install it themselves)."""
    folders = {sysconfig.get_paths()[kind] for kind in ("purelib", "platlib")}
    return any(part in ("site-packages", "dist-packages") for part in path.parts) or any(
        path.is_relative_to(folder) for folder in folders
    )


def code_runtime_env(problems: Sequence[Problem] = ()) -> dict[str, Any]:
    """The Ray ``runtime_env`` that ships this process's ``optimlab`` package and the top-level
    module (a ``.py`` file or a package folder) of every user problem among ``problems`` that is
    not an installed package."""
    modules = [str(Path(__file__).resolve().parents[1])]
    for problem in problems:
        if not isinstance(problem, UserProblem):
            continue
        top = problem.spec.partition(":")[0].strip().split(".")[0]
        found = importlib.util.find_spec(top)
        if found is None:
            continue
        if found.submodule_search_locations:  # a package (or a namespace package): its folder
            path = Path(next(iter(found.submodule_search_locations))).resolve()
        elif found.origin and found.origin.endswith(".py"):
            path = Path(found.origin).resolve()
        else:
            continue
        if not _installed(path) and str(path) not in modules:
            modules.append(str(path))
    return {"py_modules": modules, "excludes": ["__pycache__", "*.pyc"]}


def _train_remote(unit: list[Any], memory_budget: int, fingerprint: str) -> dict[str, Any]:
    """One unit on a Ray worker: its results as plain data, or what went wrong as a value (a
    user's problem that raised is no failure of the worker: Ray must not retry it)."""
    import torch

    torch.set_num_threads(1)  # one CPU per task, as the local workers
    mine = code_fingerprint()
    if mine != fingerprint:
        return {"mismatch": mine, "host": socket.gethostname()}
    spec = unit[0].problem
    try:
        problem = _WORKER_PROBLEMS.get(spec)
        if problem is None:
            try:
                problem = _WORKER_PROBLEMS[spec] = get_problem(spec)
            except ProblemError:
                raise
            except ValueError as error:  # cannot be loaded there: its module is missing on the node
                return {"load_error": " ".join(str(error).split()), "host": socket.gethostname()}
        results = train_unit(problem, unit, memory_budget)
    except ProblemError as error:
        return {"problem_error": error, "traceback": traceback.format_exc()}
    return {"results": [result.to_dict() for result in results]}


class _RemoteTraceback(Exception):
    """The traceback of an error raised on a Ray worker, as text (a ProblemError's ``__cause__``)."""

    def __str__(self) -> str:
        return str(self.args[0])


class RayExecutor:
    """Trains units as Ray tasks (see the module docstring).

    ``address``: ``None`` (a private local Ray of ``num_cpus`` CPUs, default all), ``"HOST:PORT"``,
    ``"ray://HOST:PORT"`` or ``"auto"``; ``max_retries``: how often a unit whose worker died is
    started again; ``ship_code``: send this process's optimlab and user problem modules to the
    workers (else they must have the same installed)."""

    def __init__(
        self,
        problems: Mapping[str, Problem],
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        max_retries: int = 3,
        ship_code: bool = True,
    ) -> None:
        if memory_budget < 1:
            raise ValueError(f"memory_budget must be ≥ 1 byte, got {memory_budget!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be ≥ 0, got {max_retries!r}")
        if num_cpus is not None and num_cpus < 1:
            raise ValueError(f"num_cpus must be ≥ 1, got {num_cpus!r}")
        if address is not None:
            check_address(address)
            if num_cpus is not None:
                raise ValueError("num_cpus is for a local Ray; a cluster's nodes say their own CPUs")
        self.problems, self.address, self.num_cpus = problems, address, num_cpus
        self.memory_budget, self.max_retries, self.ship_code = memory_budget, max_retries, ship_code
        self._ray: Any = None
        self._remote: Any = None
        self._owns_ray = False  # whether close() disconnects (this executor connected)
        self._pending: dict[Any, Unit] = {}
        #: where the units trained, in words (for the command's last line)
        self.where = "on Ray (not needed: every run was stored)"

    def connect(self) -> None:
        """Connect to the cluster (or start the local Ray) unless connected already."""
        if self._remote is not None:
            return
        ray = require_ray()
        if self.address is not None:
            check_reachable(self.address)
            if ray.is_initialized():
                raise RayClusterError(
                    f"this process has joined a Ray cluster already: it cannot join {self.address!r} "
                    "too (leave the address out to use the one it has joined)"
                )
        if not ray.is_initialized():
            runtime_env = code_runtime_env(list(self.problems.values())) if self.ship_code else None
            try:
                ray.init(
                    address=self.address or "local",
                    num_cpus=self.num_cpus if self.address is None else None,
                    runtime_env=runtime_env,
                    include_dashboard=False,
                    log_to_driver=False,  # workers' output stays in the session's logs
                    logging_level=logging.ERROR,  # Ray's own notes (a token in use, …): errors only
                )
            except (ConnectionError, RuntimeError) as error:  # another Ray version, a wrong token, …
                message = " ".join(str(error).split())
                raise RayClusterError(f"cannot join the Ray cluster at {self.address!r}: {message}") from None
            self._owns_ray = True
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if not self._owns_ray:
            self.where = f"on the Ray this process had joined ({cpus} CPUs)"
        elif self.address is None:
            self.where = f"on a local Ray of {cpus} CPUs"
        else:
            self.where = f"on the Ray cluster at {self.address} ({cpus} CPUs)"
        self._ray = ray
        self._remote = ray.remote(_train_remote).options(
            num_cpus=1, max_retries=self.max_retries, retry_exceptions=False
        )

    def train(self, units: Sequence[Unit]) -> Iterator[tuple[Unit, list[RunResult]]]:
        """Submit every unit (the costliest first, as given), then yield each as it finishes."""
        if not units:
            return
        self.connect()
        ray, fingerprint = self._ray, code_fingerprint()
        try:
            for unit in units:
                self._pending[self._remote.remote(list(unit), self.memory_budget, fingerprint)] = unit
            while self._pending:
                waiting = list(self._pending)
                ray.wait(waiting, num_returns=1)  # until one finishes, then every one finished by now
                ready, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)
                for ref in ready:
                    unit = self._pending.pop(ref)
                    yield unit, self._results(ref, unit)
        except BaseException:
            self._cancel()
            raise

    def _results(self, ref: Any, unit: Unit) -> list[RunResult]:
        ray = self._ray
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayTaskError as error:  # the lab's own code raised on the worker
            cause = getattr(error, "cause", None)
            if isinstance(cause, Exception):  # its own error, the worker's traceback as the cause
                raise cause from _RemoteTraceback(str(error))
            raise
        except ray.exceptions.RayError as error:
            first = " ".join(str(error).split())[:300]
            raise RayClusterError(
                f"a unit of {len(unit)} run(s) of {unit[0].problem} was lost "
                f"{self.max_retries + 1} time(s) with its worker ({type(error).__name__}: {first}); "
                "every run stored so far is kept: run the same command to resume"
            ) from None
        if "results" in outcome:
            return [RunResult.from_dict(d) for d in outcome["results"]]
        if "problem_error" in outcome:
            problem_error: ProblemError = outcome["problem_error"]
            raise problem_error from _RemoteTraceback(outcome["traceback"])
        if "mismatch" in outcome:
            raise RayClusterError(
                f"the Ray worker on {outcome['host']} runs {outcome['mismatch']}, this driver "
                f"{code_fingerprint()}: install the same torch on every node (optimlab is shipped "
                "to the workers unless ship_code=False)"
            )
        raise RayClusterError(
            f"a Ray worker on {outcome['host']} cannot load problem {unit[0].problem!r}: "
            f"{outcome['load_error']} (its module must be importable there: see README, "
            "'Running a sweep on a cluster')"
        )

    def _cancel(self) -> None:
        if self._ray is not None:
            for ref in self._pending:
                with contextlib.suppress(Exception):  # finished or lost already: nothing to cancel
                    self._ray.cancel(ref, force=True)
        self._pending.clear()

    def close(self, cancel: bool = False) -> None:
        """Cancel the pending units with ``cancel`` (else wait for them) and disconnect from Ray if
        this executor connected (a local Ray it started stops)."""
        if cancel:
            self._cancel()
        elif self._pending and self._ray is not None:
            self._ray.wait(list(self._pending), num_returns=len(self._pending))
            self._pending.clear()
        if self._owns_ray and self._ray is not None:
            self._ray.shutdown()
        self._owns_ray, self._remote = False, None
