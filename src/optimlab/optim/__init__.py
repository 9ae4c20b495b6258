"""optimlab.optim — drop-in replacements for torch.optim, each written once as a pure rule.

>>> import torch, optimlab.optim as optim
>>> model = torch.nn.Linear(3, 1)
>>> opt = optim.Adam(model.parameters(), lr=1e-3)        # same arguments as torch.optim.Adam

Rules live in :mod:`optimlab.optim.rules` (the modern optimizers' in :mod:`optimlab.optim.modern`);
:mod:`optimlab.optim.functional` calls them directly.
"""

from optimlab.optim import functional, rules
from optimlab.optim.base import RuleOptimizer
from optimlab.optim.lbfgs import LBFGS
from optimlab.optim.modern import ADOPT, AdamWScheduleFree, AdEMAMix, Lamb, Lion, Prodigy, SGDScheduleFree
from optimlab.optim.muon import MuonWithAdamW, muon_param_groups
from optimlab.optim.optimizers import (
    ASGD,
    SGD,
    Adadelta,
    Adafactor,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Muon,
    NAdam,
    RAdam,
    RMSprop,
    Rprop,
    SparseAdam,
)

__all__ = [
    "ADOPT",
    "ASGD",
    "LBFGS",
    "SGD",
    "AdEMAMix",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "AdamWScheduleFree",
    "Adamax",
    "Lamb",
    "Lion",
    "Muon",
    "MuonWithAdamW",
    "NAdam",
    "Prodigy",
    "RAdam",
    "RMSprop",
    "Rprop",
    "RuleOptimizer",
    "SGDScheduleFree",
    "SparseAdam",
    "functional",
    "muon_param_groups",
    "rules",
]
