"""Benchmarks: data pipeline, blur operator, metrics, classical baselines, runner and CLI."""

__version__ = "0.1.0"
