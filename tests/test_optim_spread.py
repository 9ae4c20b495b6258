"""Matrix rules on sharded parameters (optimlab.optim.engine.spread), in this process: the owner
assignment and the shard arithmetic, and — on a one-rank gloo group (127.0.0.1, no other process) —
which DTensor layouts are spread and which fall back to the whole matrix on every rank, both with one
process's numbers, and a failing rule. Two ranks: tests/test_distributed.py (``spread/muon``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.distributed as dist

import optimlab.optim as ol
from optimlab.optim.engine import spread

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is unavailable")


@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
def test_shard_sizes_are_torch_chunks_then_empty_shards(world: int) -> None:
    for length in range(0, 20):
        chunks = [len(c) for c in torch.arange(length).chunk(world)] if length else []
        assert spread.shard_sizes(length, world) == tuple(chunks + [0] * (world - len(chunks)))


def test_matrix_work_is_the_work_of_the_flattened_matrix_products() -> None:
    assert spread.matrix_work((32, 48)) == 32 * 48 * 32
    assert spread.matrix_work((48, 32)) == 32 * 48 * 32
    assert spread.matrix_work((3, 2, 3, 3)) == 3 * 18 * 3  # a convolution as its (out, in·kh·kw) matrix


def test_owners_balance_the_work_deterministically() -> None:
    assert spread.assign_owners([5, 5, 5, 5], 2) == [0, 1, 0, 1]  # ties: earlier first, lowest rank
    assert spread.assign_owners([1, 9, 4, 4], 2) == [1, 0, 1, 1]  # largest first to the least loaded
    assert spread.assign_owners([3, 1, 2], 1) == [0, 0, 0]
    assert spread.assign_owners([], 4) == []
    generator = torch.Generator().manual_seed(0)
    for world in (2, 3, 8):
        loads = torch.randint(1, 1000, (40,), generator=generator).tolist()
        owners = spread.assign_owners(loads, world)
        assert owners == spread.assign_owners(list(loads), world)
        totals = [sum(w for w, o in zip(loads, owners, strict=True) if o == r) for r in range(world)]
        # list scheduling's bound: no rank above the average by more than one matrix's work
        assert max(totals) <= sum(loads) / world + max(loads)
    with pytest.raises(ValueError, match="world must be at least 1"):
        spread.assign_owners([1], 0)


# --- one rank: the engine's paths on real DTensors ---------------------------------------------


@pytest.fixture(scope="module")
def one_rank() -> Iterator[None]:
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


class Exchanges:
    """Counts the spread path's all_to_all exchanges while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = spread._exchange

        def counted(*args: Any, **kwargs: Any) -> torch.Tensor:
            self.count += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(spread, "_exchange", counted)


def _matrices() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return [torch.randn(shape, generator=generator) for shape in ((6, 4), (6, 4), (3, 5), (2, 3, 2, 2))]


def _train(params: list[torch.Tensor], make_grad: Any, steps: int = 3, **kwargs: Any) -> ol.Muon:
    optimizer = ol.Muon(params, lr=0.05, flatten=True, **kwargs)
    for step in range(steps):
        for index, param in enumerate(params):
            param.grad = make_grad(index, step, param)
        optimizer.step()
    return optimizer


def _gradient(index: int, step: int, shape: torch.Size) -> torch.Tensor:
    generator = torch.Generator().manual_seed(100 * step + index)
    return torch.randn(shape, generator=generator)


@pytest.mark.parametrize("batch_matrices", [False, True])
@pytest.mark.parametrize("layout", ["rows", "columns", "hsdp", "replicated"])
def test_dtensor_matrices_give_one_process_numbers_spread_or_not(
    one_rank: None, monkeypatch: pytest.MonkeyPatch, layout: str, batch_matrices: bool
) -> None:
    """Sharded along rows or columns of a one-dimensional mesh: spread (two exchanges a step); on a
    two-dimensional mesh or replicated: the whole matrix on every rank (the rule's own DTensor
    path, no exchange). Parameters and state bit for bit as plain tensors in one process."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    if layout == "hsdp":
        mesh, placements = init_device_mesh("cpu", (1, 1)), [Replicate(), Shard(0)]
    else:
        mesh = init_device_mesh("cpu", (1,))
        placements = [{"rows": Shard(0), "columns": Shard(1), "replicated": Replicate()}[layout]]
    plain = [m.clone() for m in _matrices()]
    sharded = [distribute_tensor(m.clone(), mesh, placements) for m in _matrices()]

    def plain_grad(index: int, step: int, param: torch.Tensor) -> torch.Tensor:
        return _gradient(index, step, param.shape)

    def sharded_grad(index: int, step: int, param: torch.Tensor) -> torch.Tensor:
        return distribute_tensor(_gradient(index, step, param.shape), mesh, placements)

    expected = _train(plain, plain_grad, batch_matrices=batch_matrices)
    exchanges = Exchanges(monkeypatch)
    got = _train(sharded, sharded_grad, batch_matrices=batch_matrices)
    assert exchanges.count == (2 * 3 if layout in ("rows", "columns") else 0)
    for mine, theirs in zip(sharded, plain, strict=True):
        assert torch.equal(mine.full_tensor(), theirs)
        mine_state, their_state = got.state[mine], expected.state[theirs]
        assert mine_state["momentum_buffer"].placements == mine.placements  # state stays sharded
        assert torch.equal(mine_state["momentum_buffer"].full_tensor(), their_state["momentum_buffer"])


def test_a_failing_matrix_rule_raises_and_writes_nothing(one_rank: None) -> None:
    """A matrix rule that drops the state it is given cannot be spread: the owner says so, every rank
    raises (through the status of the exchange), nothing is written."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    def forgetful_rule(param: torch.Tensor, grad: torch.Tensor, state: Any, **hyper: Any) -> Any:
        return ol.rules.muon(param, grad, state, **hyper)[0], {}

    class Broken(ol.Muon):
        rule = staticmethod(forgetful_rule)

    mesh = init_device_mesh("cpu", (1,))
    param = distribute_tensor(_matrices()[0], mesh, [Shard(0)])
    before = param.full_tensor().clone()
    optimizer = Broken([param], lr=0.05)
    param.grad = distribute_tensor(_gradient(0, 0, param.shape), mesh, [Shard(0)])
    with pytest.raises(RuntimeError, match="must return the state it is given"):
        optimizer.step()
    assert torch.equal(param.full_tensor(), before)
    assert not optimizer.state[param]["momentum_buffer"].full_tensor().any()


def test_muon_with_adamw_spreads_only_its_muon_groups(
    one_rank: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The AdamW groups of MuonWithAdamW are elementwise: no exchange, no agreement check for them."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (1,))
    matrix = distribute_tensor(_matrices()[0], mesh, [Shard(0)])
    bias = distribute_tensor(torch.ones(6), mesh, [Shard(0)])
    optimizer = ol.MuonWithAdamW([{"params": [matrix]}, {"params": [bias]}])
    assert [g["use_muon"] for g in optimizer.param_groups] == [True, False]
    exchanges = Exchanges(monkeypatch)
    checks = []
    original = spread.all_ranks_same
    monkeypatch.setattr(spread, "all_ranks_same", lambda *a: checks.append(a) or original(*a))
    matrix.grad = distribute_tensor(_gradient(0, 0, matrix.shape), mesh, [Shard(0)])
    bias.grad = distribute_tensor(torch.ones(6), mesh, [Shard(0)])
    optimizer.step()
    assert exchanges.count == 2 and len(checks) == 1


def test_state_the_rule_creates_is_sharded_like_the_parameter(
    one_rank: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A matrix rule whose state appears on its first step (as SGD's momentum buffer): the owner
    announces it, every rank stores its shard in a new tensor laid out like the parameter (a third
    exchange, that step only), and the numbers are one process's."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    def lazy_rule(param: torch.Tensor, grad: torch.Tensor, state: Any, **hyper: Any) -> Any:
        state = state if "momentum_buffer" in state else {"momentum_buffer": torch.zeros_like(param)}
        return ol.rules.muon(param, grad, state, **hyper)

    class Lazy(ol.Muon):
        rule = staticmethod(lazy_rule)

        def init_state(self, param: torch.Tensor, group: dict[str, Any]) -> dict[str, torch.Tensor]:
            return {}

    mesh = init_device_mesh("cpu", (1,))
    plain = _matrices()[:3]
    sharded = [distribute_tensor(m.clone(), mesh, [Shard(0)]) for m in _matrices()[:3]]
    expected = Lazy(plain, lr=0.05, batch_matrices=True)
    got = Lazy(sharded, lr=0.05, batch_matrices=True)
    exchanges = Exchanges(monkeypatch)
    for step in range(3):
        for index, (mine, theirs) in enumerate(zip(sharded, plain, strict=True)):
            theirs.grad = _gradient(index, step, theirs.shape)
            mine.grad = distribute_tensor(theirs.grad, mesh, [Shard(0)])
        expected.step()
        got.step()
    assert exchanges.count == 2 * 3 + 1
    for mine, theirs in zip(sharded, plain, strict=True):
        assert torch.equal(mine.full_tensor(), theirs)
        buffer = got.state[mine]["momentum_buffer"]
        assert buffer.placements == mine.placements
        assert torch.equal(buffer.full_tensor(), expected.state[theirs]["momentum_buffer"])
