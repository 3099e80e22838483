"""Tensor files in the clean filter: where to cut them, and what to store each piece against
(docs/store.md, "Tensor-aware chunking" and "Deltas").

A file whose first bytes say it holds tensors (safetensors, numpy, a PyTorch zip checkpoint:
formats/tensors) is cut at its tensors' boundaries, float pieces stored in byte planes. If
the index holds an earlier version of the same path whose manifest is in the cache, a piece
that starts and ends where one of its chunks did is stored as a delta against that chunk when
that is smaller: a fine-tune or the next checkpoint moves every weight a little, and the
differences of two close floats are small numbers (storage/codecs.py).

Chains stay short: a piece whose base is already `keyframe - 1` deltas deep is stored whole
(a "keyframe"), so reading any version decodes at most `keyframe` objects per chunk.

Nothing here can make a wrong file: the layout only says where to cut (the stream is stored
as it is, whatever the layout claims), and a delta is verified against its name like any
chunk. A layout that cannot be read, an index without the path, a base not in the cache: the
file is stored as it would have been without them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gitext.errors import MlxError
from gitext.git import index as gitindex
from gitext.log import trace
from gitext.repo.config import DEFAULT_KEYFRAME
from gitext.repo.context import Context

if TYPE_CHECKING:
    from gitext.formats.manifest import Manifest
    from gitext.storage.codecs import Base
    from gitext.storage.store import Piece

TENSOR_PREFIX = 64 << 10   # what the filter reads ahead to recognise a tensor file
TENSOR_MIN_SIZE = 1 << 20  # smaller files are not worth a layout
TARGET = 1 << 20           # a float piece's size (formats/tensors.tensor_cuts)


class TensorPlanner:
    """One per filter process: the index is read once, when the first tensor file comes."""

    def __init__(self, ctx: Context, keyframe: int = DEFAULT_KEYFRAME) -> None:
        self.ctx = ctx
        self.keyframe = max(1, keyframe)
        self._index: dict[bytes, bytes] | None = None

    def pieces(self, pathname: str, prefix: bytes, size: int | None) -> list[Piece] | None:
        """How to store the file whose first bytes are `prefix` (the stream's: the truth),
        or None to store it as any file (content-defined chunks)."""
        if size is None or size < TENSOR_MIN_SIZE:
            return None
        from gitext.formats.tensors import detect_layout, tensor_cuts
        from gitext.storage.store import Piece

        read_at = self._reader(pathname, prefix, size)
        try:
            regions = detect_layout(read_at, size, pathname)
        except OSError:
            return None
        if not regions:
            return None
        cuts = tensor_cuts(regions, TARGET)
        previous = self._previous(pathname)
        olds: dict[tuple[int, int], str] = {}
        if previous is not None:
            offset = 0
            for ref in previous.chunks:
                olds[(offset, ref.size)] = ref.id
                offset += ref.size
        out = []
        matched = 0
        for cut in cuts:
            base = None
            old = olds.get((cut.offset, cut.size)) if cut.width else None
            if old is not None:
                base = self._base_loader(old)
                matched += 1
            out.append(Piece(cut.size, cut.width, base, cut.cdc))
        trace(f"clean {pathname}: {len(regions)} tensor region(s), {len(out)} piece(s), "
              f"{matched} with a base in the previous version")
        return out

    def _reader(self, pathname: str, prefix: bytes,
                size: int) -> Callable[[int, int], bytes]:
        """Reads for the layout: from the stream's first bytes, else from the work-tree file
        (only ever a hint: what is stored is the stream)."""
        work_tree = self.ctx.config.repo.work_tree
        path = work_tree / pathname if work_tree is not None else None

        def read_at(offset: int, n: int) -> bytes:
            if offset + n <= len(prefix):
                return prefix[offset:offset + n]
            if path is None or offset >= size:
                return b""
            fd = os.open(path, os.O_RDONLY)
            try:
                return os.pread(fd, min(n, size - offset), offset)
            finally:
                os.close(fd)

        return read_at

    def _previous(self, pathname: str) -> Manifest | None:
        """The manifest of the version of `pathname` in the index, if it is a pointer whose
        manifest is in the cache."""
        blob = self._index_blob(pathname)
        if blob is None:
            return None
        try:
            import pygit2

            from gitext.git.scan import open_repo, pointer_in_blob

            repo = open_repo(self.ctx.config.repo.work_tree or Path.cwd())
            pointer = pointer_in_blob(repo.odb, pygit2.Oid(raw=blob))
        except Exception:  # noqa: BLE001 - a hint only: no previous version
            return None
        if pointer is None:
            return None
        try:
            return self.ctx.store.cached_manifest(pointer.oid)
        except MlxError:
            return None

    def _index_blob(self, pathname: str) -> bytes | None:
        if self._index is None:
            self._index = {}
            path = gitindex.index_path(self.ctx.config.repo.git_dir, self.ctx.config.repo.work_tree)
            try:
                found = gitindex.read(path)
            except (OSError, ValueError):
                found = None
            if found is not None:
                self._index = {e.path: e.oid for e in found[0] if e.stage == 0}
        return self._index.get(os.fsencode(pathname))

    def _base_loader(self, chunk_id: str) -> Callable[[], Base | None]:
        """Load a base when (and only if) the chunk is written: its original bytes, verified,
        and its depth; None when it is a whole chain deep already (a keyframe is due) or not
        readable."""
        store = self.ctx.store
        keyframe = self.keyframe

        def load() -> Base | None:
            from gitext.storage import codecs

            try:
                with open(store.path("chunks", chunk_id), "rb") as f:
                    coded = codecs.header(f.read(codecs.HEADER_MAX))
                depth = coded.depth if coded is not None else 0
                if depth + 1 >= keyframe:
                    return None
                return codecs.Base(chunk_id, store.read_chunk(chunk_id), depth)
            except (OSError, MlxError, codecs.Malformed):
                return None

        return load
