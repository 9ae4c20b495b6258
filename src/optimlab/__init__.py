"""optimlab: deep-learning optimizers that are fast, faithful to torch.optim, and easy to compare.

* :mod:`optimlab.optim` — the optimizer library (depends on torch only).
* :mod:`optimlab.lab` — problems, protocol, runs and storage for fair comparisons.
* :mod:`optimlab.reports` — figures and HTML reports built from stored results.
"""

__version__ = "0.1.0"
