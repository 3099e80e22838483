"""Finding and installing the peer tools that are not system packages (DVC)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

INSTALL_HINT = "python3 -m bench --install-peers"
DVC_REQUIREMENT = "dvc>=3,<4"  # the peer numbers in the issue are DVC 3.x


def _homes() -> list[Path]:
    """$HOME, then the user's home from the password database (the test suite scrubs HOME)."""
    homes = []
    if os.environ.get("HOME"):
        homes.append(Path(os.environ["HOME"]))
    with contextlib.suppress(KeyError):
        homes.append(Path(pwd.getpwuid(os.getuid()).pw_dir))
    return list(dict.fromkeys(homes))


def venv_dir() -> Path:
    """Where --install-peers puts DVC: ~/.cache/git-mlx-bench/dvc-venv of the real user."""
    homes = _homes()
    home = homes[-1] if homes else Path("/tmp")
    return home / ".cache" / "git-mlx-bench" / "dvc-venv"


def _works(exe: str) -> bool:
    try:
        return subprocess.run([exe, "--version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_dvc(explicit: str | None) -> str | None:
    """--dvc, else $GIT_MLX_BENCH_DVC, else `dvc` on PATH, else the venv of --install-peers."""
    if explicit:
        return explicit
    env = os.environ.get("GIT_MLX_BENCH_DVC")
    if env:
        return env
    on_path = shutil.which("dvc")
    if on_path and _works(on_path):
        return on_path
    for home in _homes():
        exe = home / ".cache" / "git-mlx-bench" / "dvc-venv" / "bin" / "dvc"
        if exe.exists() and _works(str(exe)):
            return str(exe)
    return None


def install_peers(quiet: bool = False) -> int:
    """Create the DVC venv (idempotent: a venv whose dvc runs is left as it is)."""
    venv = venv_dir()
    exe = venv / "bin" / "dvc"
    if exe.exists() and _works(str(exe)):
        print(f"bench: DVC already installed at {exe}")
        return 0
    print(f"bench: installing DVC into {venv} (python3 -m venv + pip install dvc)", flush=True)
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    # --quiet: pip's output is kept and shown only if the install fails.
    out = subprocess.PIPE if quiet else None
    python = sys.executable or "python3"
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    env.pop("PIP_BREAK_SYSTEM_PACKAGES", None)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    proc = subprocess.run([python, "-m", "venv", str(venv)], stdout=out, stderr=out, text=True)
    if proc.returncode != 0:
        # Debian's python3 without python3-venv has no ensurepip: a venv without pip, filled by
        # this interpreter's pip (pip >= 22.3 installs into another environment with --python).
        shutil.rmtree(venv, ignore_errors=True)
        proc = subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], stdout=out, stderr=out,
                              text=True)
        pip = [python, "-m", "pip", "--python", str(venv / "bin" / "python")]
    if proc.returncode == 0:
        proc = subprocess.run([*pip, "install", "-q", DVC_REQUIREMENT], env=env, stdout=out, stderr=out,
                              text=True)
    if proc.returncode != 0 or not _works(str(exe)):
        if quiet:
            print(((proc.stdout or "") + (proc.stderr or ""))[-4000:], file=sys.stderr)
        print(f"bench: installing DVC failed (exit {proc.returncode})", file=sys.stderr)
        return 1
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout.strip()
    print(f"bench: DVC {version} installed at {exe}")
    return 0
