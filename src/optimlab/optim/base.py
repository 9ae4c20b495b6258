"""The declarative base class of optimlab's first-order optimizers.

A concrete optimizer (see :mod:`optimlab.optim.optimizers`) declares only:

* ``rule`` — its pure update rule from :mod:`optimlab.optim.rules`;
* its constructor — torch.optim's arguments, defaults and validation;
* ``init_state(param, group)`` — the state torch.optim would create for a parameter;
* ``rule_hyperparameters(group)`` — how a param group's settings become the rule's arguments
  (``"l1"`` included: each rule takes its L1 proximal step in its own metric).

Everything else lives here once: the step loop, the options shared by every optimizer (``l1``
and the non-finite gradient policy), checkpoint compatibility, and the choice of the execution
engine that applies the rule.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import operator
import os
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from torch.optim import Optimizer

from optimlab.optim.distributed import all_ranks_agree, is_distributed, local
from optimlab.optim.engine import Engine, resolve_engine
from optimlab.optim.engine.rounding import LOW_PRECISION_DTYPES, RoundingStream, check_state_dtype
from optimlab.optim.engine.statistics import step_statistics
from optimlab.optim.engine.tensors import dense

NonFinitePolicy = Literal["propagate", "skip", "raise"]
NONFINITE_POLICIES: tuple[str, ...] = ("propagate", "skip", "raise")
ENGINE_ENV = "OPTIMLAB_ENGINE"

Rule = Callable[..., tuple[Tensor, dict[str, Tensor]]]

_grad_of = operator.attrgetter("grad")


def _plain_number(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | Tensor | str):
        return value
    if isinstance(value, numbers.Real) or (
        hasattr(value, "__float__") and getattr(value, "shape", None) == ()
    ):
        return float(value)
    return value


@functools.cache
def _takes_option(cls: type, name: str) -> bool:
    """Whether ``cls``'s constructor has the argument ``name``."""
    return name in inspect.signature(cls.__init__).parameters


def _check_fused_device(param: Tensor) -> None:
    """``fused=True`` takes floating-point tensors on devices torch has fused kernels for, with
    torch.optim's error (raised at the first step, as torch.optim raises it) otherwise."""
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    supported = _get_fused_kernels_supported_devices()
    if not (param.device.type in supported and torch.is_floating_point(param)):
        raise RuntimeError(
            "`fused=True` requires all the params to be floating point Tensors of "
            f"supported devices: {supported} but {param.dtype} and {param.device.type}"
        )


def scalar_hyperparameter(value: Any) -> Any:
    """A 1-element tensor hyperparameter as a 0-d tensor (torch.optim's ``_to_scalar``)."""
    if isinstance(value, Tensor) and value.dim() != 0:
        return value.reshape(())
    return value


def optional_term(value: Any) -> Any:
    """``None`` when a coefficient is exactly zero, so the rule leaves its term out, as torch does."""
    if isinstance(value, Tensor):
        return None if value.requires_grad is False and bool(value == 0) else scalar_hyperparameter(value)
    return None if value == 0 else value


def check_tensor_lr(lr: Any) -> None:
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")


def check_nonnegative(value: Any, message: str) -> None:
    if not value >= 0.0:
        raise ValueError(f"{message}: {value}")


def check_beta(betas: Any, index: int) -> None:
    if not 0.0 <= betas[index] < 1.0:
        raise ValueError(f"Invalid beta parameter at index {index}: {betas[index]}")


class RuleOptimizer(Optimizer):
    """A ``torch.optim.Optimizer`` whose math is one pure rule, applied by an engine.

    Options shared by every first-order optimizer, beyond torch.optim's own arguments:

    * ``l1`` (default 0): minimize f(θ) + l1·‖θ‖₁ — after each step, soft-thresholding
      θ ← sign(θ)·max(|θ| − τ, 0) with τ = γ·l1 scaled by the optimizer's own per-coordinate
      step size (τ = γ·l1 for plain SGD, γ·l1/(√v̂ + ε) for Adam); weights whose gradient stays
      below l1 become exactly 0. See :func:`optimlab.optim.rules.l1_proximal`.
    * ``nonfinite`` (default ``"propagate"``): what to do when a group's gradient holds NaN or
      ±Inf: ``"propagate"`` does what torch.optim does (the update goes ahead), ``"skip"``
      leaves that group untouched for this step and counts it in ``group["skipped_steps"]``
      (saved with ``state_dict``), ``"raise"`` raises ``FloatingPointError`` before any group
      is updated.
    * ``engine`` (default ``None``: the ``OPTIMLAB_ENGINE`` environment variable, else
      ``"auto"``): ``"eager"`` applies the rule parameter by parameter with ordinary torch ops;
      ``"fused"`` runs it as one compiled in-place kernel per parameter; ``"auto"`` picks.
      Every engine writes parameters in their own storage, only reads gradients and keeps the
      state in torch.optim's per-parameter format.
    * ``state_dtype`` (default ``None``: the parameter's dtype, as torch.optim): ``torch.bfloat16``
      keeps the state's tensors (moments, buffers) in bfloat16, half of float32's bytes: the rule
      reads them in the parameter's precision and its results are stored with stochastic rounding
      (unbiased, seeded, reproducible; :mod:`optimlab.optim.engine.rounding`), so that small
      changes are not lost as round-to-nearest loses them. Counters stay as they are.
    * ``stochastic_rounding`` (default False): bfloat16 *parameters* are updated in float32 and
      written back with stochastic rounding (their bfloat16 state too); no effect on other dtypes.

    Both storage options run on the eager engine (a step reads the random bits per tensor).

    ``differentiable=True`` makes the step differentiable, as torch.optim's: autograd records it
    (parameters, gradients, state and tensor hyperparameters), which always runs eagerly.
    """

    rule: ClassVar[Rule]
    #: the rule also accepts ``step`` as a Python number (through ``rules._scalar`` and friends):
    #: the eager engine then passes the counter's value, as torch.optim's for-loop reads it, and
    #: the rule's scalar bookkeeping is host arithmetic instead of a string of tiny tensor ops
    host_step: ClassVar[bool] = False
    #: the rule treats every element on its own (given the scalar state): the fused engine may
    #: then run it over any dense run of memory and on the local shards of DTensor parameters.
    #: Off by default, so a rule with a norm or a matrix product (LAMB, Muon) is never sliced.
    elementwise: ClassVar[bool] = False
    #: the rule reads nothing beyond its own tensor, whose dimensions its reductions span (Adafactor's
    #: row and column means and RMS): the fused engine may then compile the whole rule, one kernel per
    #: number of dimensions with every size dynamic, and step each plain dense parameter whole with it
    #: (never a flat run or a DTensor's shard: those are stepped eagerly). Ignored when ``elementwise``.
    tensorwise: ClassVar[bool] = False
    #: torch.optim's error for a sparse gradient; ``None`` where torch.optim accepts sparse
    #: gradients (SGD, Adagrad), whose rules are then applied to the densified gradient.
    sparse_gradient_error: ClassVar[str | None] = "{name} does not support sparse gradients"
    #: what the rule needs beyond its own tensor's elements, as a pure function
    #: ``(param, grad, state, **hyper) -> {name: 0-d tensor}`` of *additive* partial results (sums
    #: of squares, dot products, element counts) — LAMB's norms, Prodigy's dot products. The engines
    #: evaluate it first, on whole tensors (for a DTensor its DTensor ops reduce the partial sums
    #: over the shard group), and pass the results to the rule as extra keyword arguments: per
    #: parameter with ``statistics_scope = "tensor"``, summed over the param group and turned into
    #: arguments by :meth:`group_statistics` with ``"group"``, summed over every param group that
    #: steps and turned into arguments once by :meth:`step_statistics` with ``"step"`` (Prodigy's
    #: distance estimate, which the reference shares between groups). A rule that is elementwise given its
    #: statistics may still be declared ``elementwise``: the fused engine then compiles it with the
    #: statistics as scalar operands. Like hyperparameters, statistics may reach the rule as 0-d
    #: tensors or as Python numbers.
    statistics: ClassVar[Callable[..., dict[str, Tensor]] | None] = None
    statistics_scope: ClassVar[Literal["tensor", "group", "step"]] = "tensor"
    #: with a sparse gradient the rule is applied only to the entries the gradient touches: the
    #: eager engine gathers them from the parameter and its parameter-shaped state (at the coalesced
    #: gradient's indices), calls the rule on them and scatters the results back, leaving every other
    #: entry as it is (SparseAdam; see :mod:`optimlab.optim.engine.sparse`). Off: sparse gradients are
    #: densified, or refused with :attr:`sparse_gradient_error`.
    sparse_entries: ClassVar[bool] = False
    #: the rule takes a stack of same-shape matrices (``(k, m, n)`` as well as ``(m, n)``): where
    #: :meth:`batches_matrices` says so, the engines step same-shape parameters in one call (Muon's
    #: Newton–Schulz as one batched matmul chain). In the groups :meth:`steps_matrices` names, DTensor
    #: parameters sharded by FSDP2 are each stepped whole on one rank, the matrices spread over the
    #: ranks (:mod:`optimlab.optim.engine.spread`); the rule must then return every state entry it is
    #: given (and may create entries shaped like the parameter).
    matrix: ClassVar[bool] = False
    #: state entries that are points in parameter space (ASGD's average ``ax``, Schedule-Free's
    #: ``z``, Prodigy's initial point ``p0``), not moments: ``state_dtype`` leaves them in the
    #: parameter's dtype, since in bfloat16 they would lose what a bfloat16 parameter loses
    parameter_state: ClassVar[tuple[str, ...]] = ()
    #: the host bookkeeping of :meth:`begin_step` and :meth:`begin_group_step` reaches the rule only
    #: through :meth:`rule_hyperparameters` (Schedule-Free's γₜ, cₜ and bias correction), read again
    #: at every step: an engine that steps many runs as one (the lab's batched replicas) may then keep
    #: one param group per run, call both hooks on each run's group at each step and pass each run's
    #: arguments to the rule as data. Off by default (LAMB's and Prodigy's hooks feed statistics).
    hyperparameters_per_step: ClassVar[bool] = False

    def __init__(
        self,
        params: Any,
        defaults: dict[str, Any],
        *,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        check_nonnegative(l1, "Invalid l1 value")
        self.state_dtype = check_state_dtype(state_dtype)
        if not isinstance(stochastic_rounding, bool):
            raise ValueError(f"Invalid stochastic_rounding: {stochastic_rounding!r} (expected True or False)")
        self.stochastic_rounding = stochastic_rounding
        rounds = self.state_dtype is not None or stochastic_rounding
        if nonfinite not in NONFINITE_POLICIES:
            raise ValueError(
                f"Invalid nonfinite policy: {nonfinite!r} (expected one of {NONFINITE_POLICIES})"
            )
        name = type(self).__name__
        if defaults.get("capturable"):
            raise ValueError(
                f"capturable=True (CUDA graph capture) is not supported by optimlab.optim.{name}; "
                "its fused engine already runs one kernel per parameter"
            )
        choice = engine if engine is not None else os.environ.get(ENGINE_ENV, "auto")
        if defaults.get("fused") is True and engine is None:
            choice = "fused"
        elif defaults.get("fused") is False and engine is None:
            choice = "eager"
        if engine == "fused" and defaults.get("differentiable"):
            raise ValueError(
                "engine='fused' cannot differentiate through a step: use differentiable=True with "
                "engine='eager' or 'auto' (which step eagerly while autograd records)"
            )
        if rounds and (choice == "fused" or defaults.get("differentiable")):
            what = "engine='fused'" if choice == "fused" else "differentiable=True"
            raise ValueError(
                f"{what} does not support state_dtype or stochastic_rounding "
                "(stochastically rounded storage is written by the eager engine, without autograd)"
            )
        self.engine: Engine = resolve_engine("eager" if rounds else choice)
        defaults = {**defaults, "l1": l1, "nonfinite": nonfinite, "skipped_steps": 0}
        if rounds:  # saved with the param groups: a resumed run rounds as the uninterrupted one
            defaults["rounded_steps"] = 0
        super().__init__(params, defaults)
        if defaults.get("fused"):  # torch.optim's checks, after its base class's, as torch.optim orders them
            if defaults.get("differentiable"):
                raise RuntimeError("`fused` does not support `differentiable`")
            if defaults.get("foreach"):
                raise RuntimeError("`fused` and `foreach` cannot be `True` together.")

    # --- declaration hooks (overridden by each optimizer) ---------------------------------

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        """The state torch.optim creates for ``param`` on its first step."""
        raise NotImplementedError

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        """The rule's keyword arguments for ``group`` (``None`` switches a term off)."""
        raise NotImplementedError

    def begin_group_step(self, group: dict[str, Any]) -> None:
        """Host bookkeeping for ``group`` once per step, after :meth:`begin_step` and before any group
        steps — for every group that is not skipped for non-finite gradients, those without
        gradients included (the references advance their counters for them too): the group-level
        counters some reference implementations keep in the param group (``group["step"] += 1``),
        which :meth:`rule_hyperparameters` then hands to the rule. Nothing by default."""

    def begin_step(self, groups: list[dict[str, Any]]) -> None:
        """Host bookkeeping once per step, before any group steps and before any statistics are
        evaluated: ``groups`` are the param groups that step this time (all of them, those without
        gradients included, but those skipped for non-finite gradients), in order. What a reference
        computes once for all groups goes here: LAMB's global gradient norm, Prodigy's step size
        d·γ read from the first group. Nothing by default."""

    def step_statistics(self, groups: list[dict[str, Any]], totals: dict[str, Tensor]) -> dict[str, Any]:
        """With ``statistics_scope = "step"``: the summed :attr:`statistics` of every parameter that
        steps (over all ``groups``, see :meth:`begin_step`) → the extra keyword arguments of every rule
        call of this step, updating state shared by the groups on the way. Called once per step,
        before any group steps, when some parameter has a gradient. By default the totals themselves."""
        return totals

    def group_statistics(self, group: dict[str, Any], totals: dict[str, Tensor]) -> dict[str, Any]:
        """With ``statistics_scope = "group"``: the group's summed :attr:`statistics` → the rule's extra
        keyword arguments (updating group-level state on the way, as Prodigy's distance estimate).
        By default the totals themselves."""
        return totals

    def steps_matrices(self, group: dict[str, Any]) -> bool:
        """Whether ``group`` is stepped by the :attr:`matrix` rule as whole matrices (a group of another
        rule in the same optimizer — MuonWithAdamW's AdamW groups — is not). Its DTensor parameters
        are then spread over the ranks, each stepped whole on one (:mod:`optimlab.optim.engine.spread`)."""
        return self.matrix

    def batches_matrices(self, group: dict[str, Any]) -> bool:
        """Whether same-shape parameters of ``group`` are stepped together (a :attr:`matrix` rule)."""
        return self.matrix

    def hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        """:meth:`rule_hyperparameters` with every number a Python number or a tensor: a NumPy scalar
        or 0-d array (a ``LambdaLR`` returning ``np.float32``, say) becomes a ``float``, as torch.optim
        reads it, so that it is data for the rules and the kernels, never a structural flag."""
        return {name: _plain_number(value) for name, value in self.rule_hyperparameters(group).items()}

    # --- shared machinery ---------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # torch.optim pickles only defaults, state and param_groups; keep the engine choice and the
        # storage options too.
        return {
            **super().__getstate__(),
            "engine": self.engine.name,
            "state_dtype": self.state_dtype,
            "stochastic_rounding": self.stochastic_rounding,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        engine = state.pop("engine", None)
        for option in ("state_dtype", "stochastic_rounding"):
            if option in state:  # unpickled; load_state_dict keeps the optimizer's own
                setattr(self, option, state.pop(option))
        super().__setstate__(state)
        # torch.optim's __setstate__ adds differentiable=False to every optimizer's defaults; one
        # without that option (Adafactor, SparseAdam, Muon, Lion, …) keeps its own keys, so that its
        # param groups and state_dict stay those of the optimizer it mirrors.
        if not _takes_option(type(self), "differentiable"):
            self.defaults.pop("differentiable", None)
        if engine is not None or "engine" not in self.__dict__:  # unpickled or deep-copied
            self.engine = resolve_engine(engine or os.environ.get(ENGINE_ENV, "auto"))
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        # Checkpoints from before step became a tensor: torch.optim's scalar dtype (float32 unless
        # the default dtype is float64, never a half-precision default, whose counter stalls at 256).
        scalar_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        for param_state in self.state.values():
            step = param_state.get("step")
            if step is not None and not torch.is_tensor(step):
                param_state["step"] = torch.tensor(float(step), dtype=scalar_dtype)
            # load_state_dict casts the state to the parameter's dtype, as torch.optim does
            self._store_state_in(param_state, getattr(self, "state_dtype", None))

    def params_with_grad(self, group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
        """The group's parameters that have a gradient, and their gradients."""
        params = group["params"]
        grads = list(map(_grad_of, params))  # one attribute read per parameter: this runs every step
        with_grad = [(p, g) for p, g in zip(params, grads, strict=True) if g is not None]
        if self.sparse_gradient_error is not None and any(g.is_sparse for _, g in with_grad):
            raise RuntimeError(self.sparse_gradient_error.format(name=type(self).__name__))
        return [p for p, _ in with_grad], [g for _, g in with_grad]

    def ensure_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        """``param``'s state, created on first use; optimizers with no state (SGD without
        momentum) leave ``self.state`` without an entry, as torch.optim does."""
        state = self.state.get(param)
        if not state:
            initial = self.init_state(param, group)
            if not initial:
                return {}
            if self.state_dtype is not None and param.is_complex():
                raise ValueError(f"state_dtype={self.state_dtype} needs real parameters, not {param.dtype}")
            self._store_state_in(initial, self.state_dtype)
            state = self.state[param]
            state.update(initial)
        return state

    # --- low-precision storage (state_dtype, stochastic_rounding) ----------------------------

    @staticmethod
    def _stored_tensor(value: Any) -> bool:
        """Whether a state entry is one of the tensors that ``state_dtype`` applies to: real
        floating-point tensors with elements (not the 0-d counters and scalars)."""
        return isinstance(value, Tensor) and value.dim() > 0 and value.is_floating_point()

    def _store_state_in(self, state: dict[str, Any], dtype: torch.dtype | None) -> None:
        if dtype is None:
            return
        for key, value in state.items():
            if key not in self.parameter_state and self._stored_tensor(value) and value.dtype != dtype:
                state[key] = value.to(dtype)  # zeros and copies of θ: rounding to nearest is exact enough

    @property
    def rounds(self) -> bool:
        """Whether results are stored with stochastic rounding (``state_dtype`` or
        ``stochastic_rounding``)."""
        return self.state_dtype is not None or self.stochastic_rounding

    def readable(
        self, param: Tensor, grad: Tensor, state: dict[str, Any]
    ) -> tuple[Tensor, Tensor, dict[str, Any]]:
        """What the rule reads, in the step's precision: with low-precision storage, the state's
        bfloat16 tensors (and a bfloat16 parameter and its gradient, with ``stochastic_rounding``)
        as float32 or the parameter's dtype; without it, everything as it is (torch.optim's)."""
        if not self.rounds:
            return param, grad, state
        dtype = (
            torch.float32 if self.stochastic_rounding and param.dtype in LOW_PRECISION_DTYPES else param.dtype
        )

        def read(value: Any) -> Any:
            return value.to(dtype) if self._stored_tensor(value) and value.dtype != dtype else value

        def read_operand(value: Tensor) -> Tensor:  # a 0-d bfloat16 parameter is stepped in float32 too
            return value.to(dtype) if value.is_floating_point() and value.dtype != dtype else value

        return read_operand(param), read_operand(grad), {key: read(value) for key, value in state.items()}

    def storable(self, value: Tensor, dtype: torch.dtype) -> Tensor:
        """The rule's result ``value`` as it will be written into storage of ``dtype``: rounded
        stochastically when it is more precise than a low-precision storage (with the step's bits,
        :class:`~optimlab.optim.engine.rounding.RoundingStream`), else as it is (``copy_`` casts)."""
        stream = self._rounding_stream
        if stream is not None and dtype in LOW_PRECISION_DTYPES and value.dtype != dtype:
            return stream.round(value, dtype)
        return value

    state_dtype: torch.dtype | None = None
    stochastic_rounding: bool = False
    _rounding_stream: RoundingStream | None = None

    def _grads_finite(self, grads: list[Tensor], params: list[Tensor]) -> bool:
        """Whether every gradient is finite, on every rank that holds a shard of one: for a group
        with DTensor parameters the decision is reduced over their meshes, so all ranks take the
        same one (each rank takes part even when it has no gradient in the group)."""
        flags = [torch.isfinite(dense(local(g))).all() for g in grads]
        finite = bool(torch.stack([f.cpu() for f in flags]).all()) if flags else True
        return all_ranks_agree(finite, params)

    @property
    def _step_supports_amp_scaling(self) -> bool:
        """With ``fused=True``, as with torch.optim's fused kernels, ``GradScaler`` hands the step its
        scale and inf flag (``grad_scale``, ``found_inf``) instead of unscaling first — which is also
        what lets float16 gradients through."""
        return bool(self.defaults.get("fused"))

    @torch._disable_dynamo  # torch.compiler.disable, importing dynamo on the first call (as torch.optim)
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Perform one optimization step (``closure`` re-evaluates the model and returns the loss).

        ``torch.compile`` does not trace into it (a graph break): the engine runs as it is, calling
        its own compiled kernels. Autograd records the step only with ``differentiable=True``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.set_grad_enabled(bool(self.defaults.get("differentiable"))):
            self._step_groups()
        return loss

    def _step_groups(self) -> None:
        # With fused=True the caller (GradScaler) may set a gradient scale and an inf flag on the
        # optimizer, as torch.optim's fused kernels take them: an inf skips the whole step (state is
        # still created, as torch's does), a scale is divided out of the gradients — in place, as
        # torch's fused kernels do, so gradients read the same after ``scaler.step()`` either way.
        fused = bool(self.defaults.get("fused"))
        grad_scale = getattr(self, "grad_scale", None) if fused else None
        found_inf = getattr(self, "found_inf", None) if fused else None
        if found_inf is not None and bool(found_inf):
            for group in self.param_groups:
                params, _ = self.params_with_grad(group)
                for param in params:
                    self.ensure_state(param, group)
            return
        # Check every group before touching any: nonfinite="raise" must leave all of them as they were.
        work = []
        skipped: set[int] = set()
        for index, group in enumerate(self.param_groups):
            params, grads = self.params_with_grad(group)
            checked = group["nonfinite"] != "propagate"
            # ranks decide together (with collectives) for DTensor parameters: whether a gradient is
            # finite, and which sharded matrices a matrix rule steps; a rank takes part even when it
            # has no gradient in the group
            together = (checked or (self.matrix and self.steps_matrices(group))) and any(
                map(is_distributed, group["params"])
            )
            if not params and not together:
                continue
            if group.get("fused"):
                for param in params:
                    _check_fused_device(param)
            finite = not checked or self._grads_finite(grads, group["params"])
            if not finite and group["nonfinite"] == "raise":
                raise FloatingPointError(
                    f"non-finite gradient in param group {index} of {type(self).__name__} "
                    "(nonfinite='raise'); no parameter was updated"
                )
            if not finite:
                skipped.add(id(group))
            if params or (together and self.matrix and self.steps_matrices(group)):
                work.append((group, params, grads, finite))
        if grad_scale is not None:
            for _, _, grads, _ in work:
                for grad in grads:
                    grad.div_(grad_scale.to(grad.device))
        stepping_groups = [group for group in self.param_groups if id(group) not in skipped]
        self.begin_step(stepping_groups)
        for group in stepping_groups:  # those without gradients too, as the references count them
            self.begin_group_step(group)
        extras = None
        if self.statistics is not None and self.statistics_scope == "step":
            stepping = [(group, params, grads) for group, params, grads, finite in work if finite and params]
            if stepping:  # evaluated for all groups before any of them steps
                groups = [group for group in self.param_groups if id(group) not in skipped]
                extras = step_statistics(self, groups, stepping)
        for group, params, grads, finite in work:
            if finite:
                if self.rounds and params:  # (a rank without gradients here only takes part)
                    index = next(i for i, g in enumerate(self.param_groups) if g is group)
                    self._rounding_stream = RoundingStream(0, index, group.setdefault("rounded_steps", 0))
                    group["rounded_steps"] += 1
                try:
                    if extras is None:
                        self.engine.step_group(self, group, params, grads)
                    else:  # (a group without gradients on this rank has no statistics)
                        self.engine.step_group(self, group, params, grads, extras.get(id(group)))
                finally:
                    self._rounding_stream = None
            else:  # nonfinite="skip": this group keeps its parameters and state for this step
                group["skipped_steps"] += 1
