"""``tiny-lm`` — a small decoder-only transformer learning a seeded toy language (no download).

The text comes from a fixed probabilistic grammar of English-like sentences, written here and
sampled with Python's ``random.Random(data_seed)`` (the same on every machine and Python version):
subject–verb number agreement across relative clauses (``the cat that sees the dogs runs .``),
prepositional phrases, optional adjectives. Words are the tokens (a vocabulary of about 70), so the
loss has real structure — local (determiner → adjective → noun) and long-range (the verb agrees
with a subject several words back) — that a bigram model cannot fit and a transformer can.

The token stream is cut into ``sequences`` training windows of ``context + 1`` tokens (inputs are
the first ``context``, targets the next token at each position) and ``sequences // 4`` validation
windows sampled from a separate stream. Next-token cross-entropy; ``val_loss`` and ``val_accuracy``
(next-token accuracy) are reported (perplexity is ``exp(val_loss)``).

The model is a pre-norm GPT-style decoder: token and learned position embeddings, ``layers`` blocks
of causal multi-head self-attention and a 4× GELU MLP, a final LayerNorm and an untied linear head.
It is written with torch's own layers (``nn.Embedding``, ``nn.Linear``, ``nn.LayerNorm``) and keeps
no buffers (the causal mask is made in ``forward``), so a sweep trains as the lab's batched
replicas. Its logits come out as ``[batch, vocab, time]`` — the layout ``cross_entropy`` takes —
so the lab's generic accuracy (``argmax`` over dim 1) is next-token accuracy. The embeddings and
the head are marked ``muon = False``: the ``muon`` preset trains them with AdamW, as Muon's
authors advise, and its hidden matrices with Muon.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from functools import cache
from typing import Any

import torch
from torch import Tensor, nn

from optimlab.lab.problems.base import Budget, TensorProblem, check_options, parse_batch
from optimlab.lab.problems.parabola import _int_option

OPTIONS = {
    "layers": "transformer blocks (default 2)",
    "width": "model width, divisible by heads (default 128)",
    "heads": "attention heads (default 4)",
    "context": "tokens per training window (default 64)",
    "sequences": "training windows (default 512; validation: a quarter as many)",
    "steps": "default budget in optimizer steps (default 400)",
    "batch": "full | N windows per batch (default 32)",
    "data_seed": "seed of the generated text (default 0)",
}

# -- the grammar ------------------------------------------------------------------------------------

_DETERMINERS = {"sg": ("the", "a", "every", "this"), "pl": ("the", "some", "many", "these")}
_ADJECTIVES = ("small", "big", "red", "quiet", "old", "happy", "clever", "green")
_NOUNS = {
    "sg": ("cat", "dog", "bird", "child", "teacher", "robot", "farmer", "horse"),
    "pl": ("cats", "dogs", "birds", "children", "teachers", "robots", "farmers", "horses"),
}
_TRANSITIVE = {
    "sg": ("sees", "likes", "follows", "finds", "helps", "watches"),
    "pl": ("see", "like", "follow", "find", "help", "watch"),
}
_INTRANSITIVE = {"sg": ("runs", "sleeps", "sings", "waits"), "pl": ("run", "sleep", "sing", "wait")}
_PREPOSITIONS = ("near", "with", "behind")
_PUNCTUATION = (".", "and", "that")

#: the vocabulary, in a fixed order (token id = position)
VOCABULARY: tuple[str, ...] = tuple(
    sorted(
        {
            *(w for words in _DETERMINERS.values() for w in words),
            *_ADJECTIVES,
            *(w for words in _NOUNS.values() for w in words),
            *(w for words in _TRANSITIVE.values() for w in words),
            *(w for words in _INTRANSITIVE.values() for w in words),
            *_PREPOSITIONS,
            *_PUNCTUATION,
        }
    )
)


def _noun_phrase(rng: random.Random, number: str, depth: int) -> list[str]:
    """Det Adj{0,2} Noun, then (at low depth) maybe a prepositional phrase or a relative clause."""
    words = [rng.choice(_DETERMINERS[number])]
    words += [rng.choice(_ADJECTIVES) for _ in range(rng.choice((0, 0, 1, 1, 2)))]
    words.append(rng.choice(_NOUNS[number]))
    if depth < 2:
        roll = rng.random()
        if roll < 0.2:
            words += [rng.choice(_PREPOSITIONS), *_noun_phrase(rng, rng.choice(("sg", "pl")), depth + 1)]
        elif roll < 0.4:
            words += ["that", *_verb_phrase(rng, number, depth + 1)]
    return words


def _verb_phrase(rng: random.Random, number: str, depth: int) -> list[str]:
    """An intransitive verb, or a transitive one and its object; agrees with ``number``."""
    if rng.random() < 0.4:
        words = [rng.choice(_INTRANSITIVE[number])]
    else:
        words = [rng.choice(_TRANSITIVE[number]), *_noun_phrase(rng, rng.choice(("sg", "pl")), depth + 1)]
    if depth == 0 and rng.random() < 0.15:
        words += ["and", rng.choice(_INTRANSITIVE[number])]
    return words


def sentence(rng: random.Random) -> list[str]:
    """One sentence of the grammar, its full stop included."""
    number = rng.choice(("sg", "pl"))
    return [*_noun_phrase(rng, number, 0), *_verb_phrase(rng, number, 0), "."]


def token_stream(length: int, seed: int, stream: str) -> Tensor:
    """``length`` token ids of sentences sampled from the grammar (``stream`` names the split)."""
    rng = random.Random(f"tiny-lm/{stream}/{seed}")
    index = {word: i for i, word in enumerate(VOCABULARY)}
    tokens: list[int] = []
    while len(tokens) < length:
        tokens.extend(index[w] for w in sentence(rng))
    return torch.tensor(tokens[:length], dtype=torch.long)


@cache
def _windows(sequences: int, context: int, seed: int) -> tuple[Tensor, Tensor]:
    """(training, validation) windows of ``context + 1`` tokens, from two separate streams."""
    validation = max(1, sequences // 4)
    train = token_stream(sequences * (context + 1), seed, "train").view(sequences, context + 1)
    val = token_stream(validation * (context + 1), seed, "validation").view(validation, context + 1)
    return train, val


# -- the model --------------------------------------------------------------------------------------


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions ≤ t (no buffers: the mask is
    made per call)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, h: Tensor) -> Tensor:
        batch, time, width = h.shape
        q, k, v = self.qkv(h).split(width, dim=-1)
        shape = (batch, time, self.heads, width // self.heads)
        q, k, v = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(width // self.heads)
        future = torch.ones(time, time, dtype=torch.bool, device=h.device).triu(1)
        weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
        mixed = (weights @ v).transpose(1, 2).reshape(batch, time, width)
        return self.out(mixed)


class Block(nn.Module):
    """Pre-norm transformer block: h + attn(LN(h)), then h + MLP(LN(h)) with a 4× GELU MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attention = CausalSelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, h: Tensor) -> Tensor:
        h = h + self.attention(self.norm1(h))
        return h + self.mlp(self.norm2(h))


class TinyLM(nn.Module):
    """Decoder-only transformer: ``tokens [batch, time]`` → logits ``[batch, vocab, time]``."""

    def __init__(self, vocab: int, context: int, width: int, heads: int, layers: int) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.zeros(context, width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        nn.init.normal_(self.token.weight, std=0.02)
        nn.init.normal_(self.position, std=0.02)
        for p in (self.token.weight, self.position, self.head.weight):
            p.muon = False  # type: ignore[attr-defined]  # embeddings and head: AdamW under the muon preset

    def forward(self, tokens: Tensor) -> Tensor:
        h = self.token(tokens) + self.position[: tokens.shape[-1]]
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h)).transpose(-2, -1)


# -- the problem ------------------------------------------------------------------------------------


class TinyLanguageModel(TensorProblem):
    name = "tiny-lm"
    description = (
        "decoder-only transformer (2 layers, width 128, context 64) on a seeded toy grammar, "
        "next-token cross-entropy, 400 steps; reports val_loss and next-token val_accuracy"
    )
    #: below the default AdamW's loss after the default budget (2.53 at lr 1e-2), above a better
    #: lr's (2.29 at 3e-3): a target that separates tuned runs from untuned ones
    target_loss = 2.4
    version = "1"
    classification = True

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_options(self.name, self.options, OPTIONS)
        self.layers = _int_option(self.name, self.options, "layers", 2)
        self.width = _int_option(self.name, self.options, "width", 128)
        self.heads = _int_option(self.name, self.options, "heads", 4)
        self.context = _int_option(self.name, self.options, "context", 64, minimum=2)
        sequences = _int_option(self.name, self.options, "sequences", 512, minimum=4)
        steps = _int_option(self.name, self.options, "steps", 400)
        data_seed = _int_option(self.name, self.options, "data_seed", 0, minimum=0)
        if self.width % self.heads:
            raise ValueError(
                f"problem {self.name!r}: width ({self.width}) must be divisible by heads ({self.heads})"
            )
        train, val = _windows(sequences, self.context, data_seed)
        self.x, self.y = train[:, :-1], train[:, 1:]
        self.x_val, self.y_val = val[:, :-1], val[:, 1:]
        self.batch_size = parse_batch(self.options.get("batch"), sequences, 32)
        self.default_budget = Budget(steps=steps)

    def make_model(self) -> nn.Module:
        return TinyLM(len(VOCABULARY), self.context, self.width, self.heads, self.layers)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(output, target)

    def metrics(self, model: nn.Module) -> dict[str, float]:
        return {}  # the training accuracy would cost a second pass over the training set
