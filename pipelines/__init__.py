"""Integrative ketamine-therapy research workbench.

Importing this package is cheap on purpose: heavy libraries (numba kernels, mne, panel)
are imported by the submodules that need them, so every process and Dask worker starts fast.
"""

__version__ = "0.1.0"
