"""Chimera: a multi-agent research lab trained with hierarchical RL."""

__version__ = "0.1.0"
