"""Benchmark harness: ``python -m benchmarks`` (see docs/benchmarks.md).

Every measurement runs in a fresh interpreter (``python -m benchmarks.worker``), peers
alternate inside each round, and summaries are medians with the min-max spread over rounds.
"""
