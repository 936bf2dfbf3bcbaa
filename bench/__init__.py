"""Benchmarks: `make bench` (python -m bench [name ...]).

Each prints its figures beside a baseline measured in the same run.
"""
