"""Benchmarks: memories_geo next to the call a user would write instead, as ratios."""
