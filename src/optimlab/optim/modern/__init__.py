"""Modern optimizers, each checked against its authors' (or a widely used) reference package.

One module per optimizer holds its pure rule and its declaration class; the class mirrors the
reference's constructor (arguments, order, defaults, errors), state keys and ``state_dict`` format,
and adds optimlab's ``l1``, ``nonfinite`` and ``engine``. tests/reference_cases.py lists the
reference of each and tests/test_optim_reference.py checks them against it.
"""

from optimlab.optim.modern.ademamix import AdEMAMix
from optimlab.optim.modern.adopt import ADOPT
from optimlab.optim.modern.lamb import Lamb
from optimlab.optim.modern.lion import Lion
from optimlab.optim.modern.prodigy import Prodigy
from optimlab.optim.modern.schedulefree import AdamWScheduleFree, SGDScheduleFree

__all__ = ["ADOPT", "AdEMAMix", "AdamWScheduleFree", "Lamb", "Lion", "Prodigy", "SGDScheduleFree"]
