"""How the engines hand tensors to a rule: complex tensors as their real view, sparse gradients
densified; and what they check before going around torch's ops (a kernel writing through data
pointers, a rule evaluated on slices or runs): whether a step is recorded, whether a tensor is its
memory. One place, shared by the engines and the statistics pass."""

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


def recorded() -> bool:
    """Whether something is watching the ops of this step: autograd (``differentiable=True``),
    forward-mode AD, a dispatch or ``__torch_function__`` mode (``make_fx``, FlopCounterMode, ...).
    It must then see the rule evaluated with torch's ops on whole tensors, as written: no kernel
    writing through data pointers, no slices or runs."""
    return (
        torch.is_grad_enabled()
        or torch._C._len_torch_dispatch_stack() > 0
        or torch._C._is_torch_function_mode_enabled()
        or torch.autograd.forward_ad._current_level >= 0
    )


#: the types whose tensors are their memory without a further look
PLAIN_TYPES = (Tensor, torch.nn.Parameter)
_DEFAULT_TORCH_FUNCTIONS = (Tensor.__torch_function__, torch._C._disabled_torch_function_impl)


def plain_memory(tensor: Tensor) -> bool:
    """Whether ``tensor`` is its memory: a tensor or parameter (FSDP1's flat parameters included)
    without a ``__torch_dispatch__`` or ``__torch_function__`` of its own — which a kernel writing
    through data pointers, or a rule evaluated on views of it, would bypass."""
    cls = type(tensor)
    return cls in PLAIN_TYPES or (
        cls.__torch_dispatch__ is Tensor.__torch_dispatch__
        and cls.__torch_function__ in _DEFAULT_TORCH_FUNCTIONS
    )
