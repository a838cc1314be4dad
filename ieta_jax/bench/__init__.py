"""Benchmarks: `python -m ieta_jax.bench.<name>` prints a table and ratios against a baseline measured in the same run."""
