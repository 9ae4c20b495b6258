"""The entry point: :func:`train_replicas` batches what can be batched and runs the rest alone."""

from __future__ import annotations

from collections.abc import Sequence

from optimlab.lab.loop import StepsCallback
from optimlab.lab.replicas.batched import train_batched
from optimlab.lab.replicas.common import run_budget
from optimlab.lab.replicas.sequential import train_sequential
from optimlab.lab.replicas.sizing import (
    DEFAULT_MEMORY_BUDGET,
    activation_bytes,
    batchable,
    optimizer_for,
    replica_bytes,
    replica_chunks,
)
from optimlab.lab.replicas.spec import Evaluation, Mode, ReplicaProblem, ReplicaRun, ReplicaSpec
from optimlab.lab.run import EXPLOSION_FACTOR


def train_replicas(
    problem: ReplicaProblem,
    specs: Sequence[ReplicaSpec],
    *,
    epochs: int | None = None,
    steps: int | None = None,
    mode: Mode = "auto",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    explosion_factor: float = EXPLOSION_FACTOR,
    evaluation: Evaluation = "full",
    trajectory: bool = False,
    threads: int | None = 1,
    on_steps: StepsCallback | None = None,
) -> list[ReplicaRun]:
    """Train every run of ``specs`` on ``problem``; results in the order of ``specs``.

    ``mode="auto"`` batches the first-order runs (in chunks under ``memory_budget`` bytes) when the
    model allows it (:func:`~optimlab.lab.replicas.batchable`) and runs the rest — L-BFGS, foreign optimizer
    classes, models with buffers or dropout — one after another; ``"batched"`` insists (and raises
    ``ValueError`` for what cannot be batched), ``"sequential"`` never batches.

    ``evaluation="full"`` records ``problem.evaluate(model)`` before the first step and after each
    epoch (all its metrics); ``"loss"`` records only the full objective there. Within epochs both
    record the full objective alone (:class:`optimlab.lab.run.EvaluationSchedule`), computed for all
    replicas at once when it is the loss on the problem's ``x`` and ``y``. ``trajectory`` records the
    parameter vector after every step. ``threads`` applies to the batched chunks (see
    :func:`train_batched`). ``on_steps(n)``, when given, hears of the run-steps trained as they are
    (a batched step of R replicas still training counts R): its calls add up to the steps of all runs.
    """
    if mode not in ("auto", "batched", "sequential"):
        raise ValueError(f"mode must be 'auto', 'batched' or 'sequential', got {mode!r}")
    if evaluation not in ("full", "loss"):
        raise ValueError(f"evaluation must be 'full' or 'loss', got {evaluation!r}")
    total_steps, _ = run_budget(problem, epochs, steps)
    options = {
        "epochs": epochs,
        "steps": steps,
        "explosion_factor": explosion_factor,
        "evaluation": evaluation,
        "trajectory": trajectory,
        "on_steps": on_steps,
    }
    if not specs:
        return []
    if mode == "sequential":
        return [train_sequential(problem, spec, **options) for spec in specs]  # type: ignore[arg-type]

    probe = problem.build_model(specs[0].seed)
    together = [i for i, spec in enumerate(specs) if batchable(spec.optimizer)]
    if mode == "batched":
        if len(together) != len(specs):
            alone = next(i for i in range(len(specs)) if i not in set(together))
            other = optimizer_for(specs[alone].optimizer)
            raise ValueError(f"{other.__name__} cannot be batched; use mode='auto' or 'sequential'")
        if not batchable(probe):
            raise ValueError("this model cannot be batched (buffers, random layers or frozen parameters)")
    elif not batchable(probe) or len(together) < 2:
        together = []

    results: list[ReplicaRun | None] = [None] * len(specs)
    if together:
        n_params = sum(p.numel() for p in probe.parameters())
        itemsize = next(probe.parameters()).element_size()
        activations = activation_bytes(problem, probe, specs[0].seed)
        per = max(
            replica_bytes(
                n_params,
                specs[i].optimizer,
                itemsize=itemsize,
                activation_bytes=activations,
                steps=total_steps,
            )
            for i in {specs[i].optimizer: i for i in together}.values()
        )
        start = 0
        for size in replica_chunks(len(together), per, memory_budget):
            chunk = together[start : start + size]
            start += size
            if size == 1 and mode == "auto":
                results[chunk[0]] = train_sequential(problem, specs[chunk[0]], **options)  # type: ignore[arg-type]
                continue
            runs = train_batched(problem, [specs[i] for i in chunk], threads=threads, **options)  # type: ignore[arg-type]
            for i, run in zip(chunk, runs, strict=True):
                results[i] = run
    for i, spec in enumerate(specs):
        if results[i] is None:
            results[i] = train_sequential(problem, spec, **options)  # type: ignore[arg-type]
    return results  # type: ignore[return-value]
