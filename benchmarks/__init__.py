"""Benchmarks (`make bench`): figures reported as ratios against a baseline run alongside."""
