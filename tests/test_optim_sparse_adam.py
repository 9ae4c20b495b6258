"""SparseAdam's gathered steps and Adafactor's shapes, beyond what the parity table checks.

SparseAdam: the engine steps only the entries a sparse gradient touches (engine/sparse.py); untouched
entries of the parameter and its moments keep their exact bits, duplicates of an uncoalesced gradient
are summed as torch.optim sums them, torch.optim's errors for dense gradients and for sparse or complex
parameters, and the functional API steps the same entries. Adafactor: its state's shapes and torch's
quirk of one machine epsilon per group.
"""

from __future__ import annotations

import pytest
import torch

import optimlab.optim as ol
from optimlab.optim import functional as F
from optimlab.optim.engine import ENGINE_CHOICES

pytestmark = pytest.mark.filterwarnings("ignore:Sparse invariant checks:UserWarning")


def rows_gradient(rows: list[int], values: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.sparse_coo_tensor(torch.tensor([rows]), values, shape)


def embedding_gradients(step: int, shape: tuple[int, int] = (10, 3)) -> torch.Tensor:
    gen = torch.Generator().manual_seed(step)
    rows = torch.randint(0, shape[0], (4,), generator=gen).tolist()
    values = torch.randn(len(rows), shape[1], generator=gen, dtype=torch.float64)
    return rows_gradient(rows, values, shape)


@pytest.mark.parametrize("engine", ENGINE_CHOICES)
def test_untouched_rows_keep_their_exact_bits(engine: str) -> None:
    param = torch.randn(10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    param.requires_grad_()
    opt = ol.SparseAdam([param], lr=0.1, engine=engine)
    param.grad = rows_gradient([1, 4], torch.ones(2, 3, dtype=torch.float64), (10, 3))
    opt.step()  # every row but 1 and 4 keeps zero moments
    state = opt.state[param]
    before = param.detach().clone(), state["exp_avg"].clone(), state["exp_avg_sq"].clone()
    param.grad = rows_gradient([4, 7, 7], torch.full((3, 3), 0.5, dtype=torch.float64), (10, 3))
    opt.step()
    untouched = [r for r in range(10) if r not in (4, 7)]
    for after, old in zip((param.detach(), state["exp_avg"], state["exp_avg_sq"]), before, strict=True):
        assert torch.equal(after[untouched].view(torch.int64), old[untouched].view(torch.int64))
        assert not torch.equal(after[[4, 7]], old[[4, 7]])
    assert state["step"] == 2 and type(state["step"]) is int


def test_duplicates_are_summed_as_torch_sums_them() -> None:
    """Row 2 appears three times: its gradient is the sum, exactly as torch.optim's coalesce gives."""
    results = []
    for module in (ol, torch.optim):
        param = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3).requires_grad_()
        opt = module.SparseAdam([param], lr=0.05, maximize=True)
        for step in range(5):
            values = torch.arange(15, dtype=torch.float64).reshape(5, 3).cos() * (step + 1)
            param.grad = rows_gradient([2, 0, 2, 3, 2], values, (4, 3))
            opt.step()
        results.append((param.detach(), opt.state[param]["exp_avg"]))
    (ours, ours_avg), (theirs, theirs_avg) = results
    assert torch.equal(ours, theirs) and torch.equal(ours_avg, theirs_avg)
    assert torch.equal(ours[1], torch.linspace(-1, 1, 12, dtype=torch.float64)[3:6])  # row 1: never touched


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("engine", ENGINE_CHOICES)
def test_embedding_parity_over_40_steps_and_two_groups(engine: str, maximize: bool) -> None:
    runs = []
    for cls, extra in ((torch.optim.SparseAdam, {}), (ol.SparseAdam, {"engine": engine})):
        gen = torch.Generator().manual_seed(3)
        params = [torch.randn(10, 3, generator=gen, dtype=torch.float64).requires_grad_() for _ in range(2)]
        groups = [{"params": [params[0]]}, {"params": [params[1]], "lr": 0.03, "betas": (0.8, 0.9)}]
        opt = cls(groups, lr=0.01, maximize=maximize, **extra)
        for step in range(40):
            params[0].grad = embedding_gradients(step)
            params[1].grad = embedding_gradients(1000 + step)
            opt.step()
        runs.append((params, opt.state_dict()))
    (theirs, theirs_sd), (ours, ours_sd) = runs
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
    for index, state in theirs_sd["state"].items():
        assert ours_sd["state"][index]["step"] == state["step"] == 40
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(ours_sd["state"][index][key], state[key], rtol=1e-12, atol=0)


def test_nn_embedding_sparse_trains_like_torch() -> None:
    runs = []
    for module in (ol, torch.optim):
        torch.manual_seed(0)
        embedding = torch.nn.Embedding(10, 3, sparse=True).double()
        opt = module.SparseAdam(embedding.parameters(), lr=0.05)
        for step in range(6):
            opt.zero_grad()
            embedding(torch.tensor([[1, 2, 2, 5], [step, 7, 1, 1]])).pow(2).sum().backward()
            opt.step()
        runs.append(embedding.weight.detach())
    assert torch.equal(runs[0], runs[1])


def test_torch_errors_for_dense_gradients_and_sparse_or_complex_params() -> None:
    def error(build) -> str:
        with pytest.raises((RuntimeError, ValueError)) as caught:
            build()
        return f"{type(caught.value).__name__}: {caught.value}"

    for make in (
        lambda m: m.SparseAdam([torch.zeros(3, requires_grad=True), torch.zeros(2, dtype=torch.complex64)]),
        lambda m: m.SparseAdam([{"params": [torch.zeros(3)]}, {"params": [torch.zeros(3).to_sparse()]}]),
    ):
        assert error(lambda make=make: make(ol)) == error(lambda make=make: make(torch.optim))

    def dense_step(module) -> None:
        p = torch.zeros(3, requires_grad=True)
        p.grad = torch.ones(3)
        module.SparseAdam([p]).step()

    message = error(lambda: dense_step(ol))
    assert message == error(lambda: dense_step(torch.optim))
    assert "SparseAdam does not support dense gradients" in message


def test_functional_update_steps_only_the_touched_entries() -> None:
    params = {"w": torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))}
    reference = params["w"].clone().requires_grad_()
    opt = torch.optim.SparseAdam([reference], lr=0.02)
    states = None
    for step in range(5):
        grad = embedding_gradients(step, (6, 2))
        before, snapshot = params["w"], params["w"].clone()
        params, states = F.update("sparseadam", params, {"w": grad}, states, lr=0.02)
        assert torch.equal(before, snapshot) and params["w"] is not before  # pure: a new tensor
        reference.grad = grad
        opt.step()
    torch.testing.assert_close(params["w"], reference.detach(), rtol=1e-12, atol=0)
    assert states["w"]["step"] == 5


# --- Adafactor -----------------------------------------------------------------------------------


def test_adafactor_state_shapes_follow_torch() -> None:
    shapes = [(4, 3), (2, 4, 3), (5,), ()]
    states = []
    for module in (ol, torch.optim):
        params = [torch.ones(s, requires_grad=True) for s in shapes]
        opt = module.Adafactor(params)
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
        states.append([{k: (tuple(v.shape), v.dtype) for k, v in opt.state[p].items()} for p in params])
    assert states[0] == states[1]
    assert states[0][1]["row_var"][0] == (2, 4, 1) and states[0][1]["col_var"][0] == (2, 1, 3)


def test_adafactor_default_eps1_is_the_first_stepped_params_dtype_for_the_whole_group() -> None:
    """torch.optim.Adafactor sets ε₁ from the first parameter it steps and keeps it for the group: a
    float64 parameter after a float32 one uses float32's epsilon. optimlab does the same."""
    runs = []
    for module in (ol, torch.optim):
        first = torch.full((3,), 1e-6, dtype=torch.float32, requires_grad=True)
        second = torch.full((2, 2), 1.0, dtype=torch.float64, requires_grad=True)
        opt = module.Adafactor([first, second], lr=0.5)
        for step in range(3):
            first.grad = torch.full((3,), 1e-9 * (step + 1), dtype=torch.float32)
            second.grad = torch.full((2, 2), 1e-12 * (step + 1), dtype=torch.float64)  # below float32's ε
            opt.step()
        runs.append((first.detach().clone(), second.detach().clone()))
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
    # with float64's own epsilon (first stepped alone) the float64 parameter moves differently
    alone = torch.full((2, 2), 1.0, dtype=torch.float64, requires_grad=True)
    opt = ol.Adafactor([alone], lr=0.5)
    for step in range(3):
        alone.grad = torch.full((2, 2), 1e-12 * (step + 1), dtype=torch.float64)
        opt.step()
    assert not torch.allclose(alone.detach(), runs[0][1], rtol=1e-9, atol=0)


def test_adafactor_functional_matches_the_class() -> None:
    shapes = [(3, 2), (2, 3, 4), (5,)]
    gen = torch.Generator().manual_seed(0)
    start = {str(i): torch.randn(s, generator=gen, dtype=torch.float64) for i, s in enumerate(shapes)}
    hyper = {"lr": 0.05, "weight_decay": 0.1, "d": 1.5, "maximize": True}
    params, states = dict(start), None
    reference = [v.clone().requires_grad_() for v in start.values()]
    opt = torch.optim.Adafactor(reference, **hyper)
    for step in range(6):
        grads = {k: torch.sin(v + step) for k, v in params.items()}
        for p, g in zip(reference, [torch.sin(p.detach() + step) for p in reference], strict=True):
            p.grad = g
        params, states = F.update("adafactor", params, grads, states, **hyper)
        opt.step()
    for ours, theirs in zip(params.values(), reference, strict=True):
        torch.testing.assert_close(ours, theirs.detach(), rtol=1e-12, atol=1e-14)
