"""optimlab.optim as a drop-in for torch.optim: signatures, validation, flags, schedulers, hooks, scaler."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import torch

import optimlab.optim as ol
from parity_cases import PARITY

OURS_EXTRA = ("l1", "nonfinite", "engine", "state_dtype", "stochastic_rounding")
PAIRS = [(entry.ours, entry.theirs) for entry in PARITY.values()] + [(ol.LBFGS, torch.optim.LBFGS)]
PAIR_IDS = [ours.__name__ for ours, _ in PAIRS]
#: each class's own options beyond torch's and OURS_EXTRA (Muon's flatten, batch_matrices)
OPTIONS = {entry.ours: entry.options for entry in PARITY.values()}
#: a parameter shape each class accepts (Muon: matrices only)
SHAPE = {entry.ours: entry.param_shapes[0] for entry in PARITY.values()}


def param(cls: type | None = None) -> torch.Tensor:
    return torch.zeros(SHAPE.get(cls, (3,)), requires_grad=True)


# --- signatures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=PAIR_IDS)
def test_subclass_and_same_signature(ours: type, theirs: type) -> None:
    assert issubclass(ours, torch.optim.Optimizer)
    ours_params = list(inspect.signature(ours.__init__).parameters.values())
    theirs_params = list(inspect.signature(theirs.__init__).parameters.values())
    own = (*OURS_EXTRA, *OPTIONS.get(ours, ()))
    extra = [p for p in ours_params if p.name in own]
    shared = [p for p in ours_params if p.name not in own]
    assert [(p.name, p.kind, p.default) for p in shared] == [
        (p.name, p.kind, p.default) for p in theirs_params
    ]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in extra)
    if ours is not ol.LBFGS:
        assert [p.name for p in extra] == [*OPTIONS[ours], *OURS_EXTRA]
        assert [p.default for p in extra][-5:] == [0.0, "propagate", None, None, False]


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=PAIR_IDS)
def test_same_defaults_in_param_groups(ours: type, theirs: type) -> None:
    ours_group = ours([param(ours)]).param_groups[0]
    theirs_group = theirs([param(ours)]).param_groups[0]
    ours_only = ("params", "l1", "nonfinite", "skipped_steps", *OPTIONS.get(ours, ()))
    shared = {k: v for k, v in ours_group.items() if k not in ours_only}
    assert shared.keys() == {k for k in theirs_group if k != "params"}
    for key, value in shared.items():
        assert value == theirs_group[key], key


# --- validation: the same exception (type and message) as torch.optim -------------------------


def bad_params(kind: str) -> Any:
    p = param()
    return {
        "tensor": torch.zeros(3, requires_grad=True),
        "empty": [],
        "not-tensors": [1, 2],
        "none": None,
        "duplicate-groups": [{"params": [p]}, {"params": [p]}],
        "non-leaf": [p * 2],
    }[kind]


PARAM_ERRORS = ["tensor", "empty", "not-tensors", "none", "duplicate-groups", "non-leaf"]

LBFGS_INVALID: list[dict[str, Any]] = [{"lr": -1.0}, {"lr": torch.tensor([0.1, 0.2])}]

VALIDATION_CASES = (
    [(entry.ours, entry.theirs, kwargs, None) for entry in PARITY.values() for kwargs in entry.invalid]
    + [(ol.LBFGS, torch.optim.LBFGS, kwargs, None) for kwargs in LBFGS_INVALID]
    + [(ours, theirs, {}, kind) for ours, theirs in PAIRS for kind in PARAM_ERRORS]
)


def raised(build: Callable[[], Any]) -> BaseException:
    try:
        build()
    except Exception as error:
        return error
    pytest.fail("no exception raised")


@pytest.mark.parametrize(
    ("ours", "theirs", "kwargs", "params"),
    VALIDATION_CASES,
    ids=[f"{o.__name__}-{p or ','.join(k)}-{i}" for i, (o, _, k, p) in enumerate(VALIDATION_CASES)],
)
def test_same_error_as_torch(ours: type, theirs: type, kwargs: dict[str, Any], params: str | None) -> None:
    theirs_error = raised(lambda: theirs(bad_params(params) if params else [param(ours)], **kwargs))
    ours_error = raised(lambda: ours(bad_params(params) if params else [param(ours)], **kwargs))
    assert type(ours_error) is type(theirs_error)
    assert str(ours_error) == str(theirs_error)
    if kwargs:  # the message names the argument (learning rate, beta, epsilon, ...)
        assert str(ours_error)


def test_lbfgs_rejects_param_groups_like_torch() -> None:
    groups = [{"params": [param()]}, {"params": [param()]}]
    theirs_error = raised(lambda: torch.optim.LBFGS(groups))
    ours_error = raised(lambda: ol.LBFGS([{"params": [param()]}, {"params": [param()]}]))
    assert type(ours_error) is type(theirs_error) and str(ours_error) == str(theirs_error)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"l1": -0.1}, "l1"), ({"nonfinite": "ignore"}, "nonfinite"), ({"engine": "cuda-graphs"}, "engine")],
)
def test_our_own_arguments_are_validated(kwargs: dict[str, Any], fragment: str) -> None:
    for entry in PARITY.values():
        with pytest.raises(ValueError, match=fragment):
            entry.ours([param(entry.ours)], **kwargs)


# --- implementation flags ------------------------------------------------------------------------

FLAG_CLASSES = [entry.ours for entry in PARITY.values()]


@pytest.mark.parametrize("cls", FLAG_CLASSES, ids=lambda c: c.__name__)
def test_implementation_flags_are_accepted(cls: type) -> None:
    arguments = inspect.signature(cls).parameters
    for flag, values in {"foreach": (None, True, False), "fused": (None, False)}.items():
        if flag not in arguments:
            continue
        for value in values:
            p = param(cls)
            opt = cls([p], **{flag: value})
            assert opt.param_groups[0][flag] == value
            p.grad = torch.ones_like(p)
            opt.step()
            assert torch.isfinite(p).all() and (p != 0).any()
    if "fused" in arguments:
        assert cls([param()], fused=True).param_groups[0]["fused"] is True
    for flag in ("capturable", "differentiable"):
        if flag in arguments:
            assert cls([param()], **{flag: False}).param_groups[0][flag] is False


@pytest.mark.parametrize("cls", FLAG_CLASSES, ids=lambda c: c.__name__)
def test_capturable_raises_a_clear_value_error(cls: type) -> None:
    if "capturable" not in inspect.signature(cls).parameters:
        pytest.skip(f"torch.optim.{cls.__name__} has no capturable flag")
    with pytest.raises(
        ValueError, match=rf"capturable=True .*not supported by optimlab\.optim\.{cls.__name__}"
    ):
        cls([param()], capturable=True)


@pytest.mark.parametrize("cls", FLAG_CLASSES, ids=lambda c: c.__name__)
def test_fused_refuses_what_torch_refuses(cls: type) -> None:
    """fused=True: torch.optim's errors, at torch.optim's moments (differentiable and foreach at
    construction; parameters on a device or of a dtype without fused kernels at the first step,
    before any state exists); engine="fused" cannot differentiate either."""
    if "fused" not in inspect.signature(cls).parameters:
        pytest.skip(f"torch.optim.{cls.__name__} has no fused flag")
    for extra, message in (
        ({"differentiable": True}, "does not support `differentiable`"),
        ({"foreach": True}, "cannot be `True` together"),
    ):
        for make in (cls, getattr(torch.optim, cls.__name__)):
            with pytest.raises(RuntimeError, match=message):
                make([param()], fused=True, **extra)
    with pytest.raises(ValueError, match="engine='fused' cannot differentiate"):
        cls([param()], engine="fused", differentiable=True)
    for make in (cls, getattr(torch.optim, cls.__name__)):
        meta = torch.nn.Parameter(torch.zeros(3, device="meta"))
        optimizer = make([meta], fused=True)  # constructing is fine, as in torch.optim
        created = [sorted(s) for s in optimizer.state.values() if s]  # Adagrad's, made at construction
        meta.grad = torch.zeros(3, device="meta")
        with pytest.raises(RuntimeError, match="`fused=True` requires all the params to be floating point"):
            optimizer.step()
        assert [sorted(s) for s in optimizer.state.values() if s] == created  # refused before any state
        complex_param = torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))
        complex_param.grad = torch.ones(3, dtype=torch.complex64)
        with pytest.raises(RuntimeError, match="`fused=True` requires all the params to be floating point"):
            make([complex_param], fused=True).step()


# --- torch's machinery works unchanged: schedulers, hooks, GradScaler ---------------------------


def regression_data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(32, 4, generator=gen, dtype=torch.float64)
    return x, x @ torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64) + 0.1


def model_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 1).double()
    b = torch.nn.Linear(4, 1).double()
    b.load_state_dict(a.state_dict())
    return a, b


def train_with_scheduler(model, optimizer, scheduler_factory, epochs: int) -> list[list[float]]:
    x, y = regression_data()
    scheduler = scheduler_factory(optimizer)
    lrs = []
    for _ in range(epochs):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x).squeeze(-1), y).backward()
        optimizer.step()
        scheduler.step()
        lrs.append([float(lr) for lr in scheduler.get_last_lr()])
    return lrs


SCHEDULERS = {
    "StepLR-SGD": (
        lambda m, cls: cls(m.parameters(), lr=0.1, momentum=0.9),
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
    ),
    "OneCycleLR-SGD-momentum": (
        lambda m, cls: cls(m.parameters(), lr=0.1, momentum=0.9, nesterov=True),
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.2, total_steps=12),
    ),
    "OneCycleLR-Adam-betas": (
        lambda m, cls: cls(m.parameters(), lr=0.01),
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=12),
    ),
    "CosineAnnealingLR-RMSprop": (
        lambda m, cls: cls(m.parameters(), lr=0.01, centered=True),
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=12),
    ),
    "StepLR-ASGD": (  # eta follows the scheduled lr from the next step on
        lambda m, cls: cls(m.parameters(), lr=0.05, t0=4),
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
    ),
    "StepLR-Rprop": (  # lr is only the initial step size: the schedule changes the group, not the steps
        lambda m, cls: cls(m.parameters(), lr=0.02),
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
    ),
    "ExponentialLR-AdamW-tensor-lr": (
        lambda m, cls: cls(m.parameters(), lr=torch.tensor(0.02, dtype=torch.float64)),
        lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.8),
    ),
}


@pytest.mark.parametrize("case", list(SCHEDULERS))
def test_scheduler_drives_optimlab_like_torch(case: str) -> None:
    make_optimizer, make_scheduler = SCHEDULERS[case]
    name = case.split("-")[1]
    ours_model, theirs_model = model_pair()
    ours = make_optimizer(ours_model, getattr(ol, name))
    theirs = make_optimizer(theirs_model, getattr(torch.optim, name))
    ours_lrs = train_with_scheduler(ours_model, ours, make_scheduler, 12)
    theirs_lrs = train_with_scheduler(theirs_model, theirs, make_scheduler, 12)
    assert ours_lrs == theirs_lrs
    assert len({tuple(lr) for lr in ours_lrs}) > 1  # the schedule did change the learning rate
    for a, b in zip(ours_model.parameters(), theirs_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls", [*FLAG_CLASSES, ol.LBFGS], ids=lambda c: c.__name__)
def test_step_hooks_fire_once_per_step(cls: type) -> None:
    torch.optim.LBFGS([param()])  # wraps torch's own LBFGS.step with the hook machinery too
    p = param(cls)
    opt = cls([p])
    calls: list[str] = []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    handle = opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (p - 1).pow(2).sum()
        loss.backward()
        if cls is ol.SparseAdam:  # it takes sparse gradients only
            p.grad = p.grad.to_sparse()
        return loss

    for _ in range(3):
        opt.step(closure)
    assert calls == ["pre", "post"] * 3
    handle.remove()
    opt.step(closure)
    assert calls == ["pre", "post"] * 3 + ["pre"]


def test_pre_hook_can_replace_the_closure() -> None:
    p = param()
    opt = ol.SGD([p], lr=0.5)
    seen: list[str] = []

    def replacement() -> torch.Tensor:
        seen.append("replacement")
        p.grad = torch.ones(3)
        return torch.tensor(0.0)

    opt.register_step_pre_hook(lambda o, args, kwargs: ((o, replacement), {}))
    opt.step(lambda: pytest.fail("the hook's closure should run instead"))
    assert seen == ["replacement"]
    torch.testing.assert_close(p.detach(), torch.full((3,), -0.5))


def test_state_dict_hooks_fire() -> None:
    opt = ol.Adam([param()])
    calls: list[str] = []
    opt.register_state_dict_pre_hook(lambda o: calls.append("sd-pre"))
    opt.register_load_state_dict_post_hook(lambda o: calls.append("load-post"))
    opt.load_state_dict(opt.state_dict())
    assert calls == ["sd-pre", "load-post"]


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_grad_scaler_on_cpu(name: str) -> None:
    """GradScaler unscales, steps and skips non-finite steps for optimlab as for torch.optim."""
    torch.manual_seed(1)
    ours_model = torch.nn.Linear(4, 2)
    theirs_model = torch.nn.Linear(4, 2)
    theirs_model.load_state_dict(ours_model.state_dict())
    x = torch.randn(16, 4)
    runs = []
    for model, module in ((ours_model, ol), (theirs_model, torch.optim)):
        opt = getattr(module, name)(model.parameters(), lr=0.01)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=2)
        scales = []
        for step in range(6):
            opt.zero_grad()
            loss = model(x).pow(2).mean() * (1e36 if step == 3 else 1.0)  # overflows once when scaled
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            scales.append(scaler.get_scale())
        runs.append((scales, opt))
    (ours_scales, _), (theirs_scales, _) = runs
    assert ours_scales == theirs_scales
    assert ours_scales[3] < ours_scales[2]  # the overflowing step was detected and skipped
    for a, b in zip(ours_model.parameters(), theirs_model.parameters(), strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


# --- sparse gradients: accepted where torch.optim accepts them, torch's error elsewhere -----------

SPARSE_OK = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "maximize": True}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01}),
    ("SparseAdam", {"lr": 0.1}),
    ("SparseAdam", {"lr": 0.1, "betas": (0.5, 0.9), "eps": 1e-4, "maximize": True}),
]


def embedding_run(module: Any, name: str, kwargs: dict[str, Any]) -> torch.Tensor | BaseException:
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(10, 3, sparse=True).double()
    opt = getattr(module, name)(embedding.parameters(), **kwargs)
    try:
        for step in range(4):
            opt.zero_grad()
            embedding(torch.tensor([[1, 2, 2, 5], [step, 7, 1, 1]])).pow(2).sum().backward()
            opt.step()
    except RuntimeError as error:
        return error
    return embedding.weight.detach()


@pytest.mark.filterwarnings("ignore:Sparse invariant checks:UserWarning")  # torch's own Adagrad
@pytest.mark.parametrize(("name", "kwargs"), SPARSE_OK, ids=[f"{n}-{len(k)}" for n, k in SPARSE_OK])
def test_sparse_gradients_where_torch_accepts_them(name: str, kwargs: dict[str, Any]) -> None:
    ours, theirs = embedding_run(ol, name, kwargs), embedding_run(torch.optim, name, kwargs)
    assert isinstance(theirs, torch.Tensor) and isinstance(ours, torch.Tensor)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("Adagrad", {"weight_decay": 0.1})]
    + [
        (n, {})
        for n in (
            "RMSprop",
            "Adadelta",
            "Adam",
            "AdamW",
            "Adamax",
            "NAdam",
            "RAdam",
            "Adafactor",
            "Rprop",
            "ASGD",
        )
    ],
)
def test_sparse_gradients_raise_torch_error(name: str, kwargs: dict[str, Any]) -> None:
    ours, theirs = embedding_run(ol, name, kwargs), embedding_run(torch.optim, name, kwargs)
    assert isinstance(theirs, RuntimeError) and isinstance(ours, RuntimeError)
    assert str(ours) == str(theirs)
