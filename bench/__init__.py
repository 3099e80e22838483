"""Benchmark harness: `python3 -m bench` compares git-mlx with git-lfs and DVC (see __main__)."""
