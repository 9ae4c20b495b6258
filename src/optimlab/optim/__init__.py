"""optimlab.optim — drop-in replacements for torch.optim, each written once as a pure rule.

>>> import torch, optimlab.optim as optim
>>> model = torch.nn.Linear(3, 1)
>>> opt = optim.Adam(model.parameters(), lr=1e-3)        # same arguments as torch.optim.Adam

Rules live in :mod:`optimlab.optim.rules`; :mod:`optimlab.optim.functional` calls them directly.
"""

from optimlab.optim import functional, rules
from optimlab.optim.base import RuleOptimizer
from optimlab.optim.lbfgs import LBFGS
from optimlab.optim.muon import MuonWithAdamW, muon_param_groups
from optimlab.optim.optimizers import SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, Muon, NAdam, RAdam, RMSprop

__all__ = [
    "LBFGS",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Muon",
    "MuonWithAdamW",
    "NAdam",
    "RAdam",
    "RMSprop",
    "RuleOptimizer",
    "functional",
    "muon_param_groups",
    "rules",
]
