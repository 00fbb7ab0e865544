"""Benchmarks, run by ``make bench`` (``python -m bench``): printed figures, never asserted.

Each ``bench/bench_*.py`` module has a ``main()``; figures are ratios against baselines measured
in the same run on the same machine, so they mean something on a laptop and in CI alike.
"""
