"""Iterative knowledge distillation for dense passage retrieval: the functions behind the workflow's rules."""

__version__ = "0.1.0"
