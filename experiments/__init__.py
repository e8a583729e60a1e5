"""Validation experiments (not installed): run from the repository root with ``python -m``."""
