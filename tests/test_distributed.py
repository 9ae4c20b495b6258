"""optimlab.optim inside distributed training, on 2 CPU ranks (gloo, 127.0.0.1), against torch.optim.

The ranks are started once for the module (tests/distributed_scenarios.py runs every scenario for
every configuration in them); each test then checks one scenario's record. Every scenario must give
what torch.optim gives in one process, to float64 rounding, parameters and optimizer state alike.
"""

from __future__ import annotations

import io
import json
import queue
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

import distributed_scenarios as scenarios

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is unavailable"
)

TOLERANCE = 1e-12
#: a torch.optim checkpoint load casts NAdam's float32 ``mu_product`` to the parameters' float64, so
#: the continued run differs from the uninterrupted one by that rounding (2e-11 here, for
#: torch.optim.NAdam itself too)
CHECKPOINT_TOLERANCE = 1e-10
CONFIG_NAMES = [name for name, *_ in scenarios.CONFIGS]


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run everything: the one-process checkpoints, a Hogwild child per configuration, the 2 ranks."""
    folder = tmp_path_factory.mktemp("distributed")
    for name in CONFIG_NAMES:
        scenarios.save_in_one_process(name, str(folder / f"{name}-1process"))
    context = mp.get_context("spawn")
    hogwild = {}
    for name in scenarios.HOGWILD_CONFIGS:
        model = scenarios.make_model()
        model.share_memory()
        results: Any = context.Queue()
        child = context.Process(target=scenarios.hogwild_child, args=(name, model, results))
        child.start()
        hogwild[name] = (model, results, child)
    mp.start_processes(scenarios.rank_main, args=(2, str(folder)), nprocs=2, join=True, start_method="spawn")
    ranks = [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]
    hogwild_records = {}
    for name, (model, results, child) in hogwild.items():
        try:
            shared, saved = results.get(timeout=120)
        except queue.Empty:
            shared, saved = None, None
        child.join(timeout=60)
        if saved is None:
            hogwild_records[name] = {"error": f"the Hogwild child exited with {child.exitcode}"}
            continue
        params = {k: v.detach() for k, v in model.state_dict().items()}
        state = torch.load(io.BytesIO(saved))
        hogwild_records[name] = {
            "shared": shared,
            "difference": scenarios.difference((params, state), scenarios.reference(name)),
        }
    return {"ranks": ranks, "hogwild": hogwild_records}


def measured(records: dict[str, Any], key: str, rank: int) -> Any:
    value = records["ranks"][rank].get(key)
    assert value is not None, f"rank {rank} recorded nothing for {key}"
    if isinstance(value, dict) and "error" in value:
        pytest.fail(f"rank {rank}, {key}:\n{value['error']}")
    return value


def assert_matches_torch(records: dict[str, Any], key: str, tolerance: float = TOLERANCE) -> None:
    for rank in (0, 1):
        difference = measured(records, key, rank)
        assert difference <= tolerance, f"rank {rank}, {key}: {difference:.3e} from torch.optim"


TRAINING = [
    *(f"fsdp2/{n}/reshard={r}" for n in CONFIG_NAMES for r in (True, False)),
    *(f"fsdp1/{n}/use_orig_params={u}" for n in CONFIG_NAMES for u in (False, True)),
    *(f"zero/{n}/bucket_view={b}" for n in CONFIG_NAMES for b in (False, True)),
    *(f"ddp/{n}" for n in CONFIG_NAMES),
]


@pytest.mark.parametrize("key", TRAINING)
def test_distributed_training_matches_one_process(records: dict[str, Any], key: str) -> None:
    """FSDP2 (DTensor parameters, resharded after forward or not), FSDP1 (flat parameters, and the
    original parameters as views of them), ZeroRedundancyOptimizer with and without bucket views
    (each rank steps its shard), DDP: parameters and optimizer state as one torch.optim process."""
    assert_matches_torch(records, key)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_distributed_checkpoints_round_trip_between_two_ranks_and_one_process(
    records: dict[str, Any], name: str
) -> None:
    """get/set_optimizer_state_dict with FSDP2: a checkpoint saved in one process loads on 2 ranks, and
    one saved on 2 ranks loads in one process (plain model, and FSDP2 on a one-rank mesh); training
    then continues exactly as without the round trip."""
    assert_matches_torch(records, f"checkpoint/{name}/1process-to-2ranks", CHECKPOINT_TOLERANCE)
    for variant, difference in measured(records, f"checkpoint/{name}/2ranks-to-1process", 0).items():
        assert difference <= CHECKPOINT_TOLERANCE, f"{variant}: {difference:.3e} from torch.optim"


def test_differentiable_steps_on_dtensor_parameters(records: dict[str, Any]) -> None:
    """Hypergradients through steps of sharded parameters (d/dw₀ and d/dlr) are torch.optim's."""
    assert_matches_torch(records, "differentiable/dtensor")


def test_nonfinite_decision_is_the_same_on_every_rank(records: dict[str, Any]) -> None:
    """A NaN in rank 1's shard only: with "skip" both ranks skip (nothing moves, both count it),
    with "raise" both raise, with "propagate" both step (as torch.optim would)."""
    skip = [measured(records, "nonfinite/skip", r) for r in (0, 1)]
    assert all(not any(s["moved"].values()) and s["skipped_steps"] == 1 and not s["raised"] for s in skip)
    raised = [measured(records, "nonfinite/raise", r) for r in (0, 1)]
    assert all(s["raised"] and not any(s["moved"].values()) for s in raised)
    propagate = [measured(records, "nonfinite/propagate", r) for r in (0, 1)]
    assert all(all(s["moved"].values()) and not s["raised"] for s in propagate)


@pytest.mark.parametrize("name", scenarios.HOGWILD_CONFIGS)
def test_hogwild_shared_model_is_trained_in_place(records: dict[str, Any], name: str) -> None:
    """``model.share_memory()`` and a child process training it: the parent sees torch.optim's
    result, and the parameters are still in shared memory."""
    record = records["hogwild"][name]
    assert "error" not in record, record.get("error")
    assert record["shared"]
    assert record["difference"] <= TOLERANCE
