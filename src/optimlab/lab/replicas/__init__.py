"""Train many small replicas of one problem at once: a sweep at the speed of one run.

A fair comparison is many small runs (optimizers × learning rates × seeds). Run one after another,
each tiny run is almost all Python overhead. Here R runs that share a model's *structure* are
stacked and stepped together:

* the R parameter vectors are one ``[R, P]`` tensor; every replica's loss comes from
  ``torch.func.functional_call`` under ``torch.vmap`` on its own mini-batch, and one backward pass
  of the summed losses gives every replica's own gradient (replicas never mix);
* the update is the optimizer's pure rule from :mod:`optimlab.optim.rules` — the same function
  the eager optimizers run — applied with ``torch.vmap`` over the replicas of each optimizer
  structure, with per-replica hyperparameters (lr, weight decay, betas, …) passed as tensors of
  shape ``[R]`` (0-d under ``vmap``); values shared by a whole group stay Python numbers, so the
  update's arithmetic is the eager path's (the gradients differ from a lone run's only by the
  summation order of batched matrix products);
* replicas of different optimizers share the forward and backward pass: each group of replicas
  with one rule and one structure (e.g. Adam without AMSGrad) gets one vmapped rule call per step;
* the vmap transform is entered directly (:func:`vmap_flat`), without torch.func.vmap's handling
  of argument trees, which would otherwise cost more than a small rule's arithmetic.

A run is defined by its :class:`ReplicaSpec` (seed, optimizer, hyperparameters, schedule, gradient
clipping) and the problem. Everything random comes from the problem —
``problem.build_model(seed)`` and ``problem.batches(seed, epoch)`` (or its fast form
``problem.epoch_order(seed, epoch)``, see :class:`ReplicaProblem`) — so a batched replica sees
the same initialization and data order as the sequential run of the same seed by construction.
:func:`train_sequential` is that sequential run (and the path of L-BFGS); the tests check that
both agree to float rounding.

What a run records, as the lab's runner does: the mini-batch loss of each step (before its
update) and the lr it used; evaluations at the steps of the run's
:class:`~optimlab.lab.run.EvaluationSchedule` (before the first step and after every epoch, the loss
alone within epochs); divergence as a result, never an exception — a NaN or ±Inf loss (``"nan"``,
``"inf"``) or a loss above ``explosion_factor · max(|initial loss|, 1)`` (``"explosion"``) ends
that replica (its parameters and state stop changing; the others go on untouched).

Schedules are torch's own: each replica gets its scheduler over a one-group stand-in optimizer
holding its hyperparameters, and the engine reads back the lr it sets (and the momentum/betas of
``cycle_momentum`` schedules) — ReduceLROnPlateau on each replica's own evaluated loss.

:func:`train_replicas` is the entry point: it batches what can be batched (:func:`batchable`:
first-order optimizers of :mod:`optimlab.optim`, models without buffers or random layers), in chunks
that fit ``memory_budget`` bytes (:func:`replica_chunks`), and runs the rest one after another.

The package, one idea per file: :mod:`.spec` (what a run is: :class:`ReplicaSpec`,
:class:`ReplicaRun`, the problem protocol), :mod:`.sizing` (whether and how many replicas batch),
:mod:`.lean_vmap` (the one place that touches torch's vmap internals), :mod:`.common` (run semantics
both paths share), :mod:`.sequential` (one run after another), :mod:`.batched` (all at once) and
:mod:`.entry` (:func:`train_replicas`, which chooses).
"""

from optimlab.lab.replicas.batched import train_batched
from optimlab.lab.replicas.entry import train_replicas
from optimlab.lab.replicas.lean_vmap import LEAN_VMAP, vmap_flat
from optimlab.lab.replicas.sequential import train_sequential
from optimlab.lab.replicas.sizing import (
    DEFAULT_MEMORY_BUDGET,
    batchable,
    optimizer_for,
    replica_bytes,
    replica_chunks,
)
from optimlab.lab.replicas.spec import ReplicaProblem, ReplicaRun, ReplicaSpec, Schedule, replicas, spec_for
from optimlab.lab.run import EXPLOSION_FACTOR

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "EXPLOSION_FACTOR",
    "LEAN_VMAP",
    "ReplicaProblem",
    "ReplicaRun",
    "ReplicaSpec",
    "Schedule",
    "batchable",
    "optimizer_for",
    "replica_bytes",
    "replica_chunks",
    "replicas",
    "spec_for",
    "train_batched",
    "train_replicas",
    "train_sequential",
    "vmap_flat",
]
