"""Muon beyond the parity table: bit-exactness against torch.optim.Muon (float32 and float64, several
groups, 40 steps), batched Newton–Schulz, flattened convolution weights, and MuonWithAdamW on a model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import optimlab.optim as ol

SHAPES = [(6, 4), (6, 4), (4, 9), (8, 8), (8, 8), (8, 8), (3, 12)]


def _pair(dtype: torch.dtype, **extra):
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES]
    return [[p.clone().requires_grad_() for p in init] for _ in range(2)]


def _groups(params):
    return [
        {"params": params[:3]},
        {"params": params[3:6], "lr": 0.01, "weight_decay": 0.05, "adjust_lr_fn": "match_rms_adamw"},
        {"params": params[6:], "nesterov": False, "momentum": 0.8},
    ]


def _run(optimizers, params_lists, steps=40):
    for step in range(steps):
        for params in params_lists:
            for index, p in enumerate(params):
                gen = torch.Generator().manual_seed(100 * step + index)
                noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
                p.grad = None if (index == 1 and step % 5 == 2) else 0.3 * p.detach() + noise
        for optimizer in optimizers:
            optimizer.step()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("lr", [0.02, "tensor"])
def test_one_matrix_at_a_time_is_bit_identical_to_torch(dtype: torch.dtype, lr) -> None:
    lr = torch.tensor(0.02) if lr == "tensor" else lr
    ours_params, theirs_params = _pair(dtype)
    ours = ol.Muon(_groups(ours_params), lr=lr, engine="eager")
    theirs = torch.optim.Muon(_groups(theirs_params), lr=lr)
    _run([ours, theirs], [ours_params, theirs_params])
    for a, b in zip(ours_params, theirs_params, strict=True):
        assert torch.equal(a, b)
        assert torch.equal(ours.state[a]["momentum_buffer"], theirs.state[b]["momentum_buffer"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_batched_newton_schulz_agrees_within_bfloat16_rounding(dtype: torch.dtype) -> None:
    ours_params, theirs_params = _pair(dtype)
    ours = ol.Muon(_groups(ours_params), lr=0.02, batch_matrices=True)
    theirs = torch.optim.Muon(_groups(theirs_params), lr=0.02)
    stacked = []
    original = ours.rule
    ours.rule = lambda p, *a, **k: stacked.append(p.dim()) or original(p, *a, **k)
    _run([ours, theirs], [ours_params, theirs_params])
    assert 3 in stacked  # the same-shape matrices did go through as stacks
    for a, b in zip(ours_params, theirs_params, strict=True):
        # an update element off by a bfloat16 ulp (2⁻⁸) now and then, times lr, over 40 steps
        torch.testing.assert_close(a, b, rtol=0, atol=1e-3)


def test_stacked_and_single_newton_schulz() -> None:
    g = torch.randn(5, 7, 3, generator=torch.Generator().manual_seed(1))
    single = torch.stack([ol.rules.newton_schulz(m) for m in g])
    stacked = ol.rules.newton_schulz(g)
    assert stacked.dtype == torch.bfloat16 and stacked.shape == g.shape
    torch.testing.assert_close(stacked.float(), single.float(), rtol=0, atol=2**-7)


def test_flatten_is_torch_on_the_reshaped_weight() -> None:
    gen = torch.Generator().manual_seed(0)
    convs = [torch.randn(8, 3, 3, 3, generator=gen), torch.randn(4, 8, 5, generator=gen)]
    ours_params = [c.clone().requires_grad_() for c in convs]
    theirs_params = [c.reshape(c.shape[0], -1).clone().requires_grad_() for c in convs]
    ours = ol.Muon(ours_params, lr=0.02, flatten=True, adjust_lr_fn="match_rms_adamw")
    theirs = torch.optim.Muon(theirs_params, lr=0.02, adjust_lr_fn="match_rms_adamw")
    for step in range(10):
        for a, b in zip(ours_params, theirs_params, strict=True):
            grad = (
                torch.cos(torch.arange(a.numel(), dtype=a.dtype) * 0.37 + step) + 0.3 * a.detach().flatten()
            )
            a.grad, b.grad = grad.reshape(a.shape), grad.reshape(b.shape)
        ours.step()
        theirs.step()
    for a, b in zip(ours_params, theirs_params, strict=True):
        assert torch.equal(a.detach().reshape(b.shape), b.detach())


def test_without_flatten_torch_rejects_what_it_rejects() -> None:
    conv = torch.zeros(4, 3, 2, 2, requires_grad=True)
    for cls in (ol.Muon, torch.optim.Muon):
        with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
            cls([conv])
    with pytest.raises(ValueError, match="Muon only supports 2D parameters"):
        ol.Muon([torch.zeros(3, requires_grad=True)], flatten=True)  # 1-D: never a matrix


def test_complex_parameters_raise_torch_error() -> None:
    for cls in (ol.Muon, torch.optim.Muon):
        p = torch.zeros(2, 2, dtype=torch.complex64, requires_grad=True)
        opt = cls([p])
        p.grad = torch.ones_like(p)
        with pytest.raises(RuntimeError, match="Muon does not support complex parameters"):
            opt.step()


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.hidden = nn.Linear(8, 16)
        self.head = nn.Linear(16, 10)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens).transpose(1, 2)
        x = torch.relu(self.conv(x)).transpose(1, 2)
        return self.head(torch.relu(self.hidden(x)))


def test_muon_with_adamw_is_torch_muon_and_torch_adamw_side_by_side() -> None:
    torch.manual_seed(0)
    model, twin = Small().double(), Small().double()
    twin.load_state_dict(model.state_dict())
    groups = ol.muon_param_groups(model, head="head")
    assert [len(g["params"]) for g in groups] == [2, 5]  # conv and hidden weights; the rest
    ours = ol.MuonWithAdamW(groups, lr=0.02, adamw_lr=1e-2, adamw_weight_decay=0.05)
    # torch: Muon on the hidden linear weight and on the conv weight seen as a matrix; AdamW on the rest
    conv_matrix = nn.Parameter(twin.conv.weight.detach().reshape(8, -1).clone())
    torch_muon = torch.optim.Muon([conv_matrix, twin.hidden.weight], lr=0.02)
    hidden = {id(twin.conv.weight), id(twin.hidden.weight)}
    torch_adamw = torch.optim.AdamW(
        [p for p in twin.parameters() if id(p) not in hidden], lr=1e-2, weight_decay=0.05
    )
    tokens = torch.randint(0, 10, (4, 6), generator=torch.Generator().manual_seed(1))
    for _ in range(8):
        for net in (model, twin):
            net.zero_grad()
            nn.functional.cross_entropy(net(tokens).reshape(-1, 10), tokens.reshape(-1)).backward()
        conv_matrix.grad = twin.conv.weight.grad.reshape(8, -1)
        ours.step()
        torch_muon.step()
        torch_adamw.step()
        with torch.no_grad():
            twin.conv.weight.copy_(conv_matrix.reshape(twin.conv.weight.shape))
    for (name, a), b in zip(model.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14, msg=name)
    kinds = {frozenset(ours.state[p]) for p in model.parameters()}
    assert kinds == {frozenset({"momentum_buffer"}), frozenset({"step", "exp_avg", "exp_avg_sq"})}
    restored = ol.MuonWithAdamW(ol.muon_param_groups(model, head="head"))
    restored.load_state_dict(ours.state_dict())
    assert [g["use_muon"] for g in restored.param_groups] == [True, False]
