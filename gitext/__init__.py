"""git-mlx: version large ML files with plain git through a compressed, chunk-deduplicated store."""

__version__ = "0.2.0"
