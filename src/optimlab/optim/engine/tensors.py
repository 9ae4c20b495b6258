"""How the engines hand tensors to a rule: complex tensors as their real view, sparse gradients
densified. One place, shared by the eager engine and the statistics pass."""

from __future__ import annotations

import torch
from torch import Tensor


def as_real(tensor: Tensor) -> Tensor:
    """Complex tensors are updated through their real view, as torch.optim does."""
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor


def dense(grad: Tensor) -> Tensor:
    """A gradient, densified when sparse: torch.optim's SGD and Adagrad accept sparse gradients
    (uncoalesced ones too), and the rule applied to the dense gradient gives their numbers (zero
    entries change nothing)."""
    return grad.to_dense() if grad.is_sparse else grad
