"""Benchmarks that print side-by-side ratios against a bare baseline (``make bench``)."""
