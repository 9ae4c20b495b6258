"""optimlab.optim inside distributed training, on 2 CPU ranks (gloo, 127.0.0.1), against torch.optim
and the reference packages (LAMB, Prodigy, Lion).

The ranks are started once for the module (tests/distributed_scenarios.py runs each configuration's
scenarios in them); each test then checks one scenario's record. Every exact scenario must give what
the reference gives in one process, to float64 rounding, parameters and optimizer state alike; under
ZeRO and FSDP1, a rule that reduces over a tensor or a group must do what its reference does there.
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
CONFIG_NAMES = [c.name for c in scenarios.CONFIGS]
CHECKPOINT_NAMES = [c.name for c in scenarios.CONFIGS if "checkpoint" in c.exact]


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run everything: the one-process checkpoints, a Hogwild child per configuration, the 2 ranks."""
    folder = tmp_path_factory.mktemp("distributed")
    for name in CHECKPOINT_NAMES:
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


VARIANTS = {
    "fsdp2": ("reshard", (True, False)),
    "fsdp1": ("use_orig_params", (False, True)),
    "zero": ("bucket_view", (False, True)),
}


def _keys(scenario: str, names: list[str]) -> list[str]:
    if scenario not in VARIANTS:
        return [f"{scenario}/{n}" for n in names]
    variant, values = VARIANTS[scenario]
    return [f"{scenario}/{n}/{variant}={v}" for n in names for v in values]


TRAINING = [
    key
    for scenario in ("fsdp2", "fsdp1", "zero", "ddp")
    for key in _keys(scenario, [c.name for c in scenarios.CONFIGS if scenario in c.exact])
]
WRAPPED = [
    key
    for scenario in scenarios.WRAPPERS
    for key in _keys(scenario, [c.name for c in scenarios.CONFIGS if scenario in c.compared])
]


@pytest.mark.parametrize("key", TRAINING)
def test_distributed_training_matches_one_process(records: dict[str, Any], key: str) -> None:
    """FSDP2 (DTensor parameters, resharded after forward or not), FSDP1 (flat parameters, and the
    original parameters as views of them), ZeroRedundancyOptimizer with and without bucket views
    (each rank steps its shard), DDP: parameters and optimizer state as one torch.optim process."""
    assert_matches_torch(records, key)


@pytest.mark.parametrize("name", CHECKPOINT_NAMES)
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


#: What ZeRO and FSDP1 do to the rules that reduce over a tensor or a group (see
#: ``scenarios.WRAPPERS``), per "scenario/config":
#: "reference" — ours gives its reference's numbers under the same wrapper, and both are away from
#: one process (the step sees a subset or a flat shard: LAMB's trust ratio and Adafactor's relative
#: step take the norm of a flat shard of weight and bias, Adafactor keeps one unfactored variance for
#: the 1-D shard; ZeRO's Prodigy estimates d from each rank's own parameters);
#: "refused" — both refuse with the same error (Muon: a flat shard is not a matrix; LAMB with
#: ``use_orig_params``: FSDP1's optimizer state dict refuses per-rank values of a scalar state);
#: "one-process" — ours all-reduces Prodigy's sums when it sees FSDP1's flat parameters (the
#: reference's ``fsdp_in_use``), so the parameters are one process's (its s and θ₀ come back in
#: FSDP1's unflattened layout); prodigyopt's own FSDP path all-reduces CUDA tensors and fails on CPU.
WRAPPED_OUTCOMES = {
    "fsdp1/lamb-fused/use_orig_params=False": "reference",
    "fsdp1/lamb-fused/use_orig_params=True": "refused",
    "fsdp1/prodigy-fused": "one-process",
    "zero/prodigy-fused": "reference",
    "fsdp1/muon-eager": "refused",
    "fsdp1/adafactor-fused": "reference",
}


def _wrapped_outcome(key: str) -> str:
    for prefix, outcome in WRAPPED_OUTCOMES.items():
        if key == prefix or key.startswith(prefix + "/"):
            return outcome
    raise KeyError(f"no expected outcome for {key}")


@pytest.mark.parametrize("key", WRAPPED)
def test_reductions_under_zero_and_fsdp1_behave_as_their_reference(records: dict[str, Any], key: str) -> None:
    """ZeRO (each rank's optimizer holds a subset of the parameters) and FSDP1's flat parameters
    cannot give one process's numbers to a rule whose statistics span a tensor or a group; there ours
    must do what its reference does under the same wrapper (see :data:`WRAPPED_OUTCOMES`)."""
    outcome = _wrapped_outcome(key)
    for rank in (0, 1):
        record = measured(records, key, rank)
        where = f"rank {rank}, {key}"
        if outcome == "refused":
            assert record["ours_error"] and record["ours_error"] == record["theirs_error"], (where, record)
            continue
        assert record["ours_error"] is None, (where, record["ours_error"])
        if outcome == "reference":
            assert record["theirs_error"] is None, (where, record["theirs_error"])
            assert record["vs_reference_wrapped"] <= TOLERANCE, (where, record)
            # the limitation is real: if this becomes exact, move the scenario to the exact ones
            assert record["params_vs_one_process"] > TOLERANCE, (where, record)
        else:  # "one-process"
            assert "CUDA" in (record["theirs_error"] or ""), (where, record["theirs_error"])
            assert record["params_vs_one_process"] <= TOLERANCE, (where, record)


def _spread_record(records: dict[str, Any], rank: int) -> dict[str, Any]:
    return measured(records, "spread/muon", rank)


@pytest.mark.parametrize("run", scenarios.SPREAD_RUNS)
def test_muon_under_fsdp2_is_one_process_bit_for_bit(records: dict[str, Any], run: str) -> None:
    """Muon's matrices spread over 2 ranks under FSDP2, in float32: parameters and momentum buffers
    equal, bit for bit, to one process — of our Muon (conv flattened, uneven shards, same-shape
    matrices stacked, a matrix without a gradient for a step), of torch.optim.Muon (shards along
    rows, and along columns; float32 and bfloat16 parameters), of a Muon whose rule creates its
    momentum buffer on the first step, of MuonWithAdamW (with its AdamW groups)."""
    for rank in (0, 1):
        record = _spread_record(records, rank)[run]
        assert record["differ"] == [], (rank, run, record["differ"], record["largest"])
        assert record["compared"] >= 9
        expected = ["(Shard(dim=0),)", "(Shard(dim=1),)"] if run.endswith("/dim1") else ["(Shard(dim=0),)"]
        assert record["placements"] == expected, record["placements"]


@pytest.mark.parametrize("run", ["muon-groups", "muon-with-adamw"])
def test_muon_under_fsdp2_orthogonalizes_each_matrix_once_on_its_owner(
    records: dict[str, Any], run: str
) -> None:
    """Every matrix one process orthogonalizes is orthogonalized on exactly one rank — its owner
    (:func:`~optimlab.optim.engine.spread.assign_owners` over the optimizer's matrices, by work) — and
    both ranks have some: rank 0 the (32, 48) matrix and the small ones, rank 1 the two (32, 32)."""
    per_rank = [sorted(map(tuple, _spread_record(records, r)[run]["matrices"])) for r in (0, 1)]
    one_process = sorted(map(tuple, _spread_record(records, 0)[run]["one_process_matrices"]))
    assert sorted(per_rank[0] + per_rank[1]) == one_process
    assert set(per_rank[0]) & set(per_rank[1]) == set()
    assert set(per_rank[1]) == {(32, 32)}
    assert {(32, 48), (3, 18)} <= set(per_rank[0])


@pytest.mark.parametrize("case", ["disagree", "swapped", "empty-group"])
def test_ranks_that_disagree_on_the_matrices_all_refuse(records: dict[str, Any], case: str) -> None:
    """A gradient missing on rank 1 only ("disagree"; "empty-group": the only one of its param group,
    so rank 1 has nothing to step there and must still take part), or missing on each rank for a
    different matrix of the same shape ("swapped": as many bytes either way): rather than wait for
    each other in mismatched collectives, or exchange the wrong shards, both ranks raise the same
    error, and no parameter or state of that group moves."""
    outcomes = [_spread_record(records, r)[case] for r in (0, 1)]
    # "empty-group": the first group (every matrix but b) stepped before the second refused
    first_group = [f"{n}.weight" for n in ("a", "c", "head", "tail")]
    moved = sorted(first_group + [f"state/{n}/momentum_buffer" for n in first_group])
    for outcome in outcomes:
        assert outcome["error"] is not None and "ranks disagree" in outcome["error"], outcome
        assert outcome["moved"] == (moved if case == "empty-group" else []), outcome
    assert outcomes[0]["error"] == outcomes[1]["error"]


def test_a_matrix_rule_failing_on_its_owner_stops_every_rank(records: dict[str, Any]) -> None:
    """The rule fails on rank 0, which owns the only matrix: rank 0 raises its error, rank 1 (which
    owns nothing) learns it from the exchange and raises too, and nothing moves on either."""
    outcomes = [_spread_record(records, r)["failing"] for r in (0, 1)]
    assert "must return the state it is given" in (outcomes[0]["error"] or ""), outcomes[0]
    assert "rank 0 could not step the matrices it owns" in (outcomes[1]["error"] or ""), outcomes[1]
    assert not outcomes[0]["moved"] and not outcomes[1]["moved"]
