"""SSH remotes against OpenSSH's sshd on loopback: git push / clone / pull with an explicit
ssh:// remote and with a zero-config ssh git remote, host key checks, authentication, and the
server dying mid-transfer."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mlxtest import (
    assert_clean_status,
    assert_clone_then_pull,
    blob_of,
    git,
    mlx,
    out,
    run,
    sha256_file,
    write_random,
)
from servers import SshServer

from gitext.formats.pointer import parse
from gitext.storage.remotes.factory import open_remote


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def objects(root: Path, kind: str) -> dict[str, int]:
    """Object name -> inode of every object under `root/kind` (chunks, packs...): a re-sent
    object gets a new inode, as uploads are renamed into place."""
    where = root / kind
    return {p.name: p.stat().st_ino for p in where.rglob("*") if p.is_file()} if where.is_dir() else {}


def chunk_files(root: Path) -> dict[str, int]:
    return objects(root, "chunks")


def landed_packs(root: Path) -> dict[str, int]:
    """Packs whose index is there too: what a push has completed."""
    found = objects(root, "packs")
    return {name: inode for name, inode in found.items()
            if name.endswith(".pack") and name[:-len(".pack")] + ".idx" in found}


@pytest.fixture
def ssh_repo(repo: Path, origin: Path, tmp_path: Path, ssh_server: SshServer) -> tuple[Path, Path]:
    """A repo whose git remote is a local bare repo and whose mlx remote is ssh://mlx-sshd/...
    (resolved through the test's ~/.ssh/config); returns (repo, the store's directory)."""
    store = tmp_path / "server-store"
    git(repo, "remote", "add", "origin", str(origin))
    mlx(repo, "track", "*.bin")
    mlx(repo, "remote", "add", "-d", "storage", f"ssh://mlx-sshd{store}")
    return repo, store


def test_push_clone_pull_through_explicit_ssh_url(ssh_repo: tuple[Path, Path], origin: Path,
                                                  tmp_path: Path) -> None:
    repo, store = ssh_repo
    write_random(repo / "model.bin", 3 * 2**20, seed=1, compressible=0.5)  # several chunks
    write_random(repo / "small.bin", 10_000, seed=2)                       # one chunk
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")
    assert (store / "files").is_dir() and landed_packs(store)
    assert not (store / "chunks").exists(), "chunks travel in packs"
    assert list((store / "tmp").iterdir()) == [], "no temp files left on the server"
    assert not (origin / "mlx").exists(), "the explicit default remote wins over zero-config"
    assert "All objects of HEAD and of unpushed commits are on the remote." in out(mlx(repo, "status"))

    assert_clone_then_pull(repo, origin, tmp_path / "other", ["model.bin", "small.bin"])


@pytest.mark.parametrize("form", ["scp", "url"])
def test_zero_config_ssh_git_remote(repo: Path, tmp_path: Path, ssh_server: SshServer, form: str) -> None:
    """A git remote reached over ssh is the storage too: objects go in its mlx/ on the server."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    url = f"mlx-sshd:{origin}" if form == "scp" else f"ssh://mlx-sshd{origin}"
    git(repo, "remote", "add", "origin", url)
    mlx(repo, "track", "*.bin")
    write_random(repo / "model.bin", 2 * 2**20, seed=4)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")
    assert (origin / "mlx" / "files").is_dir() and landed_packs(origin / "mlx")

    listing = out(mlx(repo, "remote", "list"))
    assert "origin\tssh\tssh://mlx-sshd" in listing and "zero-config" in listing, listing
    env = out(mlx(repo, "env"))
    assert "remote=origin ssh://mlx-sshd" in env and "over SSH" in env, env

    other = tmp_path / "other"
    run(["git", "clone", "-q", url, str(other)])
    assert sha256_file(other / "model.bin") == sha256_file(repo / "model.bin")
    assert_clean_status(other)


def test_zero_config_non_bare_repository_uses_its_git_dir(tmp_path: Path, ssh_server: SshServer) -> None:
    server_repo = tmp_path / "checkout"
    git(tmp_path, "init", "-q", str(server_repo))
    remote = open_remote("origin", f"mlx-sshd:{server_repo}", {"repository": "true"})
    src = tmp_path / "obj"
    src.write_bytes(b"payload")
    remote.upload("chunks/ab/abcd", src)
    assert (server_repo / ".git" / "mlx" / "chunks" / "ab" / "abcd").read_bytes() == b"payload"


def test_home_relative_scp_path(tmp_path: Path, ssh_server: SshServer) -> None:
    """`host:path` is relative to the login directory on the server, as for git and scp."""
    remote = open_remote("origin", "mlx-sshd:rel-store")
    src = tmp_path / "obj"
    src.write_bytes(b"payload")
    home = Path(os.path.expanduser(f"~{ssh_server.user}"))  # the server's idea of home
    try:
        remote.upload("chunks/ab/abcd", src)
        assert (home / "rel-store" / "chunks" / "ab" / "abcd").read_bytes() == b"payload"
    finally:
        import shutil

        shutil.rmtree(home / "rel-store", ignore_errors=True)


def push_fails(repo: Path, *needles: str) -> str:
    """`git push` fails with exit != 0, no traceback, and stderr naming every needle."""
    proc = git(repo, "push", "origin", "main", check=False, timeout=120)
    err = proc.stderr.decode()
    print(err)  # shown by pytest -rP
    assert proc.returncode != 0, err
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_unknown_host_key_is_refused_until_accepted(ssh_repo: tuple[Path, Path], origin: Path,
                                                    scrubbed_env: Path, ssh_server: SshServer) -> None:
    repo, store = ssh_repo
    known_hosts = scrubbed_env / ".ssh" / "known_hosts"
    known_hosts.unlink()
    write_random(repo / "model.bin", 1_000_000, seed=5)
    commit_all(repo, "v1")
    fingerprint = run(["ssh-keygen", "-l", "-f", str(ssh_server.host_key)]).stdout.decode().split()[1]
    start = time.monotonic()
    push_fails(repo, "not known", fingerprint, "accept_new_host_key", "hint:")
    refused = mlx(repo, "remote", "modify", "storage", "accept_new_host_key", "true", check=False)
    assert refused.returncode == 2 and "--local" in refused.stderr.decode()
    assert time.monotonic() - start < 20, "a refused host key is not retried object by object"
    assert not (store / "chunks").exists() and not (store / "packs").exists(), \
        "nothing is sent to an unverified server"
    assert not known_hosts.exists()

    mlx(repo, "remote", "modify", "--local", "storage", "accept_new_host_key", "true")
    proc = git(repo, "push", "origin", "main")
    assert "added the ssh-ed25519 host key" in proc.stderr.decode()
    assert f"[127.0.0.1]:{ssh_server.port} ssh-ed25519" in known_hosts.read_text()
    assert landed_packs(store)


def test_changed_host_key_is_refused_even_with_accept_new(ssh_repo: tuple[Path, Path],
                                                          scrubbed_env: Path, tmp_path: Path,
                                                          ssh_server: SshServer) -> None:
    repo, store = ssh_repo
    impostor = tmp_path / "impostor"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)])
    kind, blob = impostor.with_suffix(".pub").read_text().split()[:2]
    (scrubbed_env / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{ssh_server.port} {kind} {blob}\n")
    mlx(repo, "remote", "modify", "--local", "storage", "accept_new_host_key", "true")
    write_random(repo / "model.bin", 1_000_000, seed=6)
    commit_all(repo, "v1")
    push_fails(repo, "CHANGED", "ssh-keygen -R")
    assert not (store / "chunks").exists() and not (store / "packs").exists()


def test_wrong_key_is_permission_denied(ssh_repo: tuple[Path, Path], scrubbed_env: Path,
                                        tmp_path: Path) -> None:
    repo, store = ssh_repo
    stranger = tmp_path / "stranger"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)])
    config = scrubbed_env / ".ssh" / "config"
    text = config.read_text()
    config.write_text("\n".join(f"  IdentityFile {stranger}" if "IdentityFile" in line else line
                                for line in text.splitlines()) + "\n")
    write_random(repo / "model.bin", 1_000_000, seed=7)
    commit_all(repo, "v1")
    start = time.monotonic()
    push_fails(repo, "permission denied", str(stranger), "authorized_keys")
    assert time.monotonic() - start < 20
    assert not (store / "chunks").exists() and not (store / "packs").exists()


def test_agent_key_is_used(ssh_repo: tuple[Path, Path], scrubbed_env: Path, ssh_server: SshServer,
                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No IdentityFile at all: the key comes from ssh-agent, as with OpenSSH."""
    repo, store = ssh_repo
    config = scrubbed_env / ".ssh" / "config"
    config.write_text("".join(line + "\n" for line in config.read_text().splitlines()
                              if "Identit" not in line))
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        run(["ssh-add", "-q", str(ssh_server.user_key)])
        write_random(repo / "model.bin", 1_000_000, seed=8)
        commit_all(repo, "v1")
        git(repo, "push", "-q", "origin", "main")
        assert landed_packs(store)
    finally:
        agent.terminate()
        agent.wait()


def test_unreachable_server_fails_cleanly(ssh_repo: tuple[Path, Path], ssh_server: SshServer) -> None:
    repo, _ = ssh_repo
    write_random(repo / "model.bin", 1_000_000, seed=9)
    commit_all(repo, "v1")
    ssh_server.stop()
    try:
        push_fails(repo, "connection refused", "storage", "hint:")
    finally:
        ssh_server.start()


def stop_midway(proc: subprocess.Popen[bytes], server: SshServer, started: Callable[[], bool]) -> str:
    """Stop `server` once `started()` holds while `proc` still runs; return proc's stderr after
    checking it failed without a traceback. The caller restarts the server."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not started():
        time.sleep(0.005)
    assert proc.poll() is None, "the command finished before the server could be stopped"
    server.stop()
    _, err_bytes = proc.communicate(timeout=180)
    err = err_bytes.decode()
    print(err)  # shown by pytest -rP
    assert proc.returncode != 0, err
    assert "Traceback" not in err, err
    return err


def test_server_stopped_mid_push_then_rerun_completes(ssh_repo: tuple[Path, Path], origin: Path,
                                                      tmp_path: Path, ssh_server: SshServer) -> None:
    repo, store = ssh_repo
    (repo / ".mlx.yaml").write_text((repo / ".mlx.yaml").read_text() + "transfer:\n  jobs: 2\n")
    write_random(repo / "a.bin", 128 * 2**20, seed=10)
    commit_all(repo, "v1")
    proc = subprocess.Popen(["git", "-C", str(repo), "push", "origin", "main"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        err = stop_midway(proc, ssh_server, lambda: bool(landed_packs(store)))
        assert "storage" in err and "run the command again" in err, err
        assert git(origin, "rev-parse", "--verify", "-q", "refs/heads/main", check=False).returncode != 0
    finally:
        ssh_server.start()
    landed = landed_packs(store)
    assert landed, "some packs landed before the stop"

    git(repo, "push", "-q", "origin", "main")
    after = landed_packs(store)
    assert all(after[name] == inode for name, inode in landed.items()), "resent landed packs"
    assert len(after) > len(landed)
    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)])
    assert sha256_file(other / "a.bin") == sha256_file(repo / "a.bin")


def test_corrupt_object_on_the_server_is_never_written(ssh_repo: tuple[Path, Path], origin: Path,
                                                       tmp_path: Path) -> None:
    repo, store = ssh_repo
    write_random(repo / "model.bin", 2 * 2**20, seed=11)
    write_random(repo / "fine.bin", 200_000, seed=12)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")
    victim = next(iter(sorted((store / "packs").glob("*.pack"))))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.chmod(0o644)
    victim.write_bytes(bytes(data))

    other = tmp_path / "other"
    proc = run(["git", "clone", "-q", str(origin), str(other)], check=False)
    err = proc.stderr.decode()
    assert "Traceback" not in err, err
    assert "corrupt" in err, err
    damaged = [name for name in ("model.bin", "fine.bin")
               if sha256_file(other / name) != sha256_file(repo / name)]
    assert len(damaged) == 1, "exactly the file with the damaged chunk is not hydrated"
    # ...and what is in its place is its pointer, never the bad bytes
    assert parse((other / damaged[0]).read_bytes()).oid == parse(blob_of(repo, f"HEAD:{damaged[0]}")).oid


def test_server_stopped_mid_pull_then_rerun_completes(ssh_repo: tuple[Path, Path], origin: Path,
                                                      tmp_path: Path, ssh_server: SshServer) -> None:
    repo, _ = ssh_repo
    write_random(repo / "a.bin", 128 * 2**20, seed=13)
    commit_all(repo, "v1")
    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    run(["git", "clone", "-q", str(origin), str(other)], env={"GIT_MLX_SKIP_SMUDGE": "1"})
    (other / ".mlx.yaml").write_text((other / ".mlx.yaml").read_text() + "transfer:\n  jobs: 2\n")
    cache = other / ".git" / "mlx"
    proc = subprocess.Popen(["git", "-C", str(other), "mlx", "pull"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        err = stop_midway(proc, ssh_server, lambda: len(chunk_files(cache)) >= 8)
        assert "a.bin" in err, err
        assert "Socket exception" not in err, "paramiko's own log lines stay quiet"
        assert parse((other / "a.bin").read_bytes()).size == 128 * 2**20, "still the pointer"
    finally:
        ssh_server.start()
    landed = chunk_files(cache)
    assert landed

    mlx(other, "pull")
    assert all(chunk_files(cache)[name] == inode for name, inode in landed.items()), \
        "chunks already fetched were not fetched again"
    assert sha256_file(other / "a.bin") == sha256_file(repo / "a.bin")
    git(other, "checkout", "--", ".mlx.yaml")
    assert_clean_status(other)


def test_a_dying_paramiko_prefetch_thread_prints_no_traceback() -> None:
    """paramiko's readv thread dies with EOFError when the server goes away mid-read (the read
    itself then fails cleanly): its traceback stays out of the user's terminal; any other
    thread's failure is still printed. (In a process of its own: pytest has its own hook.)"""
    import subprocess
    import sys

    code = ("import threading\n"
            "import gitext.storage.remotes.ssh\n"
            "def _prefetch_thread():\n    raise EOFError()\n"
            "def other_work():\n    raise EOFError('a real bug')\n"
            "for target in (_prefetch_thread, other_work):\n"
            "    t = threading.Thread(target=target); t.start(); t.join()\n")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stderr
    assert b"_prefetch_thread" not in err and b"a real bug" in err, err
