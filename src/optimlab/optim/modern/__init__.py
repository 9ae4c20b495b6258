"""Optimizers beyond torch.optim, each matched to its authors' reference implementation."""

from optimlab.optim.modern.schedulefree import AdamWScheduleFree, SGDScheduleFree

__all__ = ["AdamWScheduleFree", "SGDScheduleFree"]
