"""Finding and installing the peer tools that are not system packages (DVC, hf-xet)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

INSTALL_HINT = "python3 -m bench --install-peers"
# The peer numbers in the issues are DVC 3.x; s3 and ssh pull in the plugins (dvc-s3, dvc-ssh)
# that DVC's S3 and SSH remotes need (the remotes scenario).
DVC_REQUIREMENT = "dvc[s3,ssh]>=3,<4"
DVC_PLUGINS = ("dvc_s3", "dvc_ssh")
# hf-xet (Hugging Face's Xet client) is the models scenario's peer: it goes into the same venv.
XET_REQUIREMENT = "hf-xet>=1.1"
PEER_MODULES = (*DVC_PLUGINS, "hf_xet")


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


def _imports(python: str, modules: tuple[str, ...]) -> bool:
    try:
        return subprocess.run([python, "-c", f"import {', '.join(modules)}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _has_plugins(venv: Path) -> bool:
    """DVC's S3 and SSH remotes are plugins (dvc-s3, dvc-ssh): the remotes scenario needs both;
    the models scenario needs hf_xet."""
    return _imports(str(venv / "bin" / "python"), PEER_MODULES)


def find_xet_python() -> str | None:
    """A python that imports hf_xet: $GIT_MLX_BENCH_XET_PYTHON, the --install-peers venv's, this one."""
    env = os.environ.get("GIT_MLX_BENCH_XET_PYTHON")
    if env:
        return env
    candidates = [str(home / ".cache" / "git-mlx-bench" / "dvc-venv" / "bin" / "python") for home in _homes()]
    for python in [*candidates, sys.executable]:
        if python and Path(python).exists() and _imports(python, ("hf_xet",)):
            return python
    return None


def _make_venv(venv: Path, out: int | None) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """A new venv and the pip command that installs into it."""
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    python = sys.executable or "python3"
    proc = subprocess.run([python, "-m", "venv", str(venv)], stdout=out, stderr=out, text=True)
    if proc.returncode == 0:
        return proc, [str(venv / "bin" / "python"), "-m", "pip"]
    # Debian's python3 without python3-venv has no ensurepip: a venv without pip, filled by
    # this interpreter's pip (pip >= 22.3 installs into another environment with --python).
    shutil.rmtree(venv, ignore_errors=True)
    proc = subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], stdout=out, stderr=out,
                          text=True)
    return proc, _pip(venv)


def _pip(venv: Path) -> list[str]:
    """The pip that installs into an existing venv: its own, or this interpreter's with --python."""
    if (venv / "bin" / "pip").exists():
        return [str(venv / "bin" / "python"), "-m", "pip"]
    return [sys.executable or "python3", "-m", "pip", "--python", str(venv / "bin" / "python")]


def install_peers(quiet: bool = False) -> int:
    """Create the DVC venv with its S3 and SSH plugins and hf-xet. Idempotent: a venv whose dvc
    runs and has the plugins and hf-xet is left as it is; one whose dvc runs without them gets
    them added."""
    venv = venv_dir()
    exe = venv / "bin" / "dvc"
    works = exe.exists() and _works(str(exe))
    if works and _has_plugins(venv):
        print(f"bench: DVC (with S3 and SSH) and hf-xet already installed at {exe}")
        return 0
    # --quiet: pip's output is kept and shown only if the install fails.
    out = subprocess.PIPE if quiet else None
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    env.pop("PIP_BREAK_SYSTEM_PACKAGES", None)
    if works:
        print(f"bench: adding DVC's S3 and SSH plugins and hf-xet to {venv} "
              f"(pip install {DVC_REQUIREMENT} {XET_REQUIREMENT})", flush=True)
        proc: subprocess.CompletedProcess[str] = subprocess.CompletedProcess([], 0)
        pip = _pip(venv)
    else:
        print(f"bench: installing DVC into {venv} (python3 -m venv + pip install "
              f"{DVC_REQUIREMENT} {XET_REQUIREMENT})",
              flush=True)
        proc, pip = _make_venv(venv, out)
    if proc.returncode == 0:
        proc = subprocess.run([*pip, "install", "-q", DVC_REQUIREMENT, XET_REQUIREMENT], env=env, stdout=out, stderr=out,
                              text=True)
    if proc.returncode != 0 or not _works(str(exe)) or not _has_plugins(venv):
        if quiet:
            print(((proc.stdout or "") + (proc.stderr or ""))[-4000:], file=sys.stderr)
        print(f"bench: installing DVC failed (exit {proc.returncode})", file=sys.stderr)
        return 1
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout.strip()
    print(f"bench: DVC {version} (with S3 and SSH) and hf-xet installed at {exe}")
    return 0
