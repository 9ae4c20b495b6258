"""Modern optimizers beyond torch.optim, each matched to its reference package: one module per
optimizer holding its pure rule(s), its statistics and its declaration class."""

from optimlab.optim.modern.lamb import Lamb
from optimlab.optim.modern.prodigy import Prodigy

__all__ = ["Lamb", "Prodigy"]
