"""Chunk repair: a chunk that is damaged or missing in the cache is fetched again from a remote.

Reads check every chunk (docs/store.md, "Reading"); a damaged one is moved to bad/ and the read
raises. Smudge (repo/filters.py) and direct hydration (repo/hydrate.py) both answer the same
way: fetch that one chunk again, say so on stderr, and read it once more. `Store.iter_content`
does the reading again for each chunk it is given a `repair` for; a `ChunkRepair` is that
callback, so the two callers share the fetch and its message and differ only in how they find
the remote (and what they say when there is none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gitext.errors import ObjectMissing
from gitext.log import warn
from gitext.storage.packs import fetch_chunk
from gitext.storage.remotes.base import Remote
from gitext.storage.store import Store


@dataclass(frozen=True)
class ChunkRepair:
    """Fetch one damaged or missing chunk again from the remote into the store (Store.iter_content's
    `repair`).

    `remote` is asked on every repair, so a remote that is never needed is never resolved: it
    returns the remote, or None when none is reachable (ObjectMissing), or raises the MlxError
    that says why there is none. `of` (a quoted path) names the file in the messages.
    """

    store: Store
    remote: Callable[[], Remote | None]
    of: str = ""

    def __call__(self, chunk_id: str) -> None:
        named = f"{self.of}: " if self.of else ""
        remote = self.remote()
        if remote is None:
            raise ObjectMissing(f"{named}chunk {chunk_id} is damaged or missing and no remote is "
                                "reachable to fetch it again", oid=chunk_id)
        warn(f"{named}chunk {chunk_id[:12]} is damaged or missing in the cache; fetching it again "
             f"from {remote.name}")
        fetch_chunk(self.store, remote, chunk_id)
