"""Reproduction of Noci et al. (2022), "Signal Propagation in Transformers"."""

__version__ = "0.1.0"
