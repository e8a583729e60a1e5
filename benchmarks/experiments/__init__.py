"""Experiments that produce the numbers quoted in notes/ (run on validation people only)."""
