"""Types of the C extension gitext.storage._cdc (_cdc.c); gitext.storage.chunker documents the algorithm."""

from typing_extensions import Buffer

def cut_points(
    buffer: Buffer,
    min_size: int,
    avg_size: int,
    max_size: int,
    final: bool,
    normalization: int = 1,
) -> list[int]: ...
def gear_table() -> list[int]: ...
