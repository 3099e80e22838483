"""`git mlx merge-driver`: what git runs for `merge=mlx` paths that both sides changed.

A tracked file's blob is pointer text, which git's default text merge would turn into conflict
markers between two oids. The content behind the pointers is what the user versions, and git
cannot merge that either when it is binary: for a binary file git keeps ours, records the
three stages and reports a conflict. This driver does the same. It leaves `%A` (ours' pointer)
as it is and exits 1: git then keeps ours in the work tree (already hydrated: the blob is the
one checked out) and writes stages 1/2/3 to the index. Two pointers to the same content are
the same file, so that is a clean merge (exit 0).

`git mlx install` configures it (gitext/git/install.py MERGE_CONFIG); `merge.mlx.recursive =
binary` makes the inner merges of a criss-cross history use git's own binary rule, as they
would for a binary file. Nothing here opens the repository: git may run the driver many
times in one merge and it only needs the two small files git hands it.
"""

from __future__ import annotations

import sys

from gitext.formats.pointer import MAX_POINTER_SIZE, Pointer, try_parse

CONFLICT = 1


def _pointer_in(path: str) -> Pointer | None:
    """The pointer in the file git wrote for one side, or None when it holds other bytes."""
    try:
        with open(path, "rb") as f:
            return try_parse(f.read(MAX_POINTER_SIZE))
    except OSError:
        return None


def merge_driver(base: str, ours: str, theirs: str, path: str) -> int:
    """Keep ours; 0 when both sides point at the same content, else report a conflict (1).

    `base` is unused: with only oids to compare there is nothing a base could decide that
    git has not (git calls a driver only when ours and theirs both differ from it).
    """
    del base
    mine, other = _pointer_in(ours), _pointer_in(theirs)
    if mine is not None and mine == other:
        return 0
    # git's own words for a binary file (ll-merge.c), on stderr: stdout is git's.
    print(f"warning: Cannot merge binary files: {path} (ours vs. theirs)", file=sys.stderr,
          flush=True)
    return CONFLICT
