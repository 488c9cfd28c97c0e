"""Donjon: a security control plane for the machine-learning lifecycle."""

__version__ = "0.1.0"

__all__ = ["__version__"]
