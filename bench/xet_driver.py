"""hf-xet as a peer: upload files to, and download them from, a local CAS (`local://DIR`).

Run by the python that has hf_xet (the --install-peers venv), as a measured step:
    python xet_driver.py upload CAS_DIR RECORD.json FILE...    # appends {path: [hash, size]}
    python xet_driver.py download CAS_DIR RECORD.json FILE DEST
Standalone on purpose: it imports nothing from bench.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    import hf_xet

    op, cas, record = argv[0], argv[1], argv[2]
    os.makedirs(cas, exist_ok=True)
    session = hf_xet.XetSession()
    endpoint = "local://" + os.path.abspath(cas)
    known = {}
    if os.path.exists(record):
        with open(record) as f:
            known = json.load(f)
    if op == "upload":
        handles = []
        with session.new_upload_commit(endpoint=endpoint) as commit:
            for path in argv[3:]:
                handles.append((path, commit.start_upload_file(path)))
        for path, handle in handles:
            meta = handle.result()
            known[os.path.basename(path)] = [meta.xet_info.hash, meta.xet_info.file_size]
        with open(record + ".tmp", "w") as f:
            json.dump(known, f)
        os.replace(record + ".tmp", record)
        return 0
    if op == "download":
        name, dest = argv[3], argv[4]
        xet_hash, size = known[name]
        with session.new_file_download_group(endpoint=endpoint) as group:
            group.start_download_file(hf_xet.XetFileInfo(xet_hash, size), dest)
        return 0
    print(f"xet_driver: unknown operation {op}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
