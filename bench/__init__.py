"""Benchmarks: the daemon against a bare loop and the usual client libraries.

``python3 tasks.py bench`` (or ``python -m bench``) starts a private Redis, the
simulator and each contender as processes on this machine, and writes
``docs/benchmarks.md``, ``docs/benchmarks.json`` and ``docs/latency_cdf.png``.
"""
