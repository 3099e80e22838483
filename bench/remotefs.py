"""A separate file system for the remotes: an ext4 image on a loop device.

On one file system git-lfs hard-links objects into a file remote and into clones (and DVC could
link too), which makes push and clone look free; a real remote is another disk or machine.
Without root, or if the mount fails, the remotes live in a plain directory and the results say so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


class RemoteFs:
    def __init__(self, workdir: Path, size: int) -> None:
        self.workdir = workdir
        self.size = size
        self.image = workdir / "remotes.img"
        self.path = workdir / "remotes"
        self.mounted = False
        self.warning = ""
        self.fstype = ""

    def __enter__(self) -> RemoteFs:
        self.path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            self._fallback("not running as root, so no loop mount")
            return self
        try:
            with open(self.image, "wb") as f:
                f.truncate(self.size)
            mkfs = ["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=0,lazy_journal_init=0"]
            subprocess.run([*mkfs, str(self.image)], check=True, capture_output=True)
            subprocess.run(["mount", "-o", "loop,noatime", str(self.image), str(self.path)], check=True,
                           capture_output=True)
            self.mounted = True
            self.fstype = f"ext4 on a loop device ({self.size / 2**30:.1f} GiB sparse image)"
        except (OSError, subprocess.CalledProcessError) as e:
            if isinstance(e, subprocess.CalledProcessError):
                detail = e.stderr.decode(errors="replace").strip()
            else:
                detail = str(e)
            self._fallback(f"loop mount failed: {detail}")
        return self

    def _fallback(self, why: str) -> None:
        self.image.unlink(missing_ok=True)
        self.fstype = "same file system as the work dirs (plain directory)"
        self.warning = (f"WARNING: remotes on the same file system as the work dirs ({why}); git-lfs may "
                        "hard-link objects into the remote and clones, so its push and clone look cheaper.")
        print(f"bench: {self.warning}", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.mounted:
            for attempt in range(5):
                proc = subprocess.run(["umount", str(self.path)], capture_output=True)
                if proc.returncode == 0:
                    break
                time.sleep(0.5 * (attempt + 1))
            else:
                subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            self.mounted = False
        self.image.unlink(missing_ok=True)
        shutil.rmtree(self.path, ignore_errors=True)

    def same_device(self, other: Path) -> bool:
        return os.stat(self.path).st_dev == os.stat(other).st_dev
