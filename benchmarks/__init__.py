"""Side-by-side benchmarks of dataflow against baselines: `python -m benchmarks` (see README.md)."""
