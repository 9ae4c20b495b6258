"""Rules applied to the entries a sparse gradient touches: gather, rule, scatter.

An optimizer declaring :attr:`~optimlab.optim.base.RuleOptimizer.sparse_entries` (SparseAdam) is
stepped, for a sparse gradient, only where that gradient has entries: the gradient is coalesced
(duplicate indices summed, as torch.optim does), its indices along its sparse dims select the touched
entries — single elements, or whole rows (slices along the dense dims) of a hybrid gradient such as
``nn.Embedding(sparse=True)``'s — of the parameter and of every parameter-shaped state tensor; the
rule, an ordinary elementwise rule, runs on those gathered values (with the gradient's values and the
scalar state as they are), and its results are scattered back to the same entries. Every other entry
of the parameter and its state keeps its exact bits. Like the rest of the engines this holds no math:
the rule is the same pure function the functional API calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    from optimlab.optim.base import RuleOptimizer


def touched(grad: Tensor) -> tuple[tuple[Tensor, ...], Tensor]:
    """The coalesced sparse gradient's index tensors (one per sparse dim) and values: indexing a
    tensor of the parameter's shape with the indices gives the values' shape."""
    grad = grad.coalesce()
    return tuple(grad.indices()), grad.values()


def _gathered(value: Any, param: Tensor, index: tuple[Tensor, ...]) -> Any:
    """A parameter-shaped state tensor at the touched entries; scalar state as it is."""
    if isinstance(value, Tensor) and value.shape == param.shape and value.dim() > 0:
        return value[index]
    return value


def rule_on_entries(
    optimizer: RuleOptimizer, param: Tensor, grad: Tensor, state: dict[str, Any], hyper: dict[str, Any]
) -> tuple[tuple[Tensor, ...], Tensor, dict[str, Any]]:
    """Run the rule on the entries of ``param`` and ``state`` that the sparse ``grad`` touches.
    Returns the indices, the new values of those parameter entries, and the new state (parameter-
    shaped entries as values at the indices, scalar entries whole). Reads only; writes nothing."""
    index, values = touched(grad)
    gathered = {key: _gathered(value, param, index) for key, value in state.items()}
    entries, values, gathered = optimizer.readable(param[index], values, gathered)  # low-precision storage
    new_values, new_state = optimizer.rule(entries, values, gathered, **hyper)
    return index, new_values, new_state


def scatter(
    index: tuple[Tensor, ...],
    target: Tensor,
    values: Tensor,
    *,
    inplace: bool,
    optimizer: RuleOptimizer | None = None,
) -> Tensor:
    """``values`` written at ``index`` of ``target`` (in place, or into a copy; rounded as
    ``optimizer`` stores its results, when given)."""
    if optimizer is not None:
        values = optimizer.storable(values, target.dtype)
    values = values.to(target.dtype)
    return target.index_put_(index, values) if inplace else target.index_put(index, values)


def step_sparse_entries(
    optimizer: RuleOptimizer, group: dict[str, Any], param: Tensor, grad: Tensor, hyper: dict[str, Any]
) -> None:
    """The eager engine's step of one parameter with a sparse gradient, in place: the touched entries
    of the parameter and of its parameter-shaped state are updated, scalar state (``step``) replaced."""
    state = optimizer.ensure_state(param, group)
    live = {key: value for key, value in state.items() if value is not None}
    index, new_values, new_state = rule_on_entries(optimizer, param, grad, live, hyper)
    scatter(index, param, new_values, inplace=True, optimizer=optimizer)
    for key, value in new_state.items():
        current = live.get(key)
        if isinstance(current, Tensor) and current.shape == param.shape and current.dim() > 0:
            scatter(index, current, value, inplace=True, optimizer=optimizer)
        elif isinstance(current, Tensor) and isinstance(value, Tensor):
            current.copy_(value)
        else:  # a Python-number counter (SparseAdam's ``step``, an int as in torch.optim)
            state[key] = value


def apply_sparse_entries(
    optimizer: RuleOptimizer, param: Tensor, grad: Tensor, state: dict[str, Any], hyper: dict[str, Any]
) -> tuple[Tensor, dict[str, Any]]:
    """The functional form: new parameter and state tensors, the arguments left untouched."""
    index, new_values, new_state = rule_on_entries(optimizer, param, grad, state, hyper)
    changed: dict[str, Any] = {}
    for key, value in new_state.items():
        current = state.get(key)
        if isinstance(current, Tensor) and current.shape == param.shape and current.dim() > 0:
            changed[key] = scatter(index, current, value, inplace=False)
        else:
            changed[key] = value
    return scatter(index, param, new_values, inplace=False), changed


__all__ = ["apply_sparse_entries", "rule_on_entries", "scatter", "step_sparse_entries", "touched"]
