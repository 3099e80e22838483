"""Real servers on loopback, without pytest: OpenSSH's sshd and moto's S3 API server.

Used by the test fixtures (tests/servers.py) and by the benchmark (bench/), so both talk to
the same servers set up the same way. Every server binds 127.0.0.1 on a free port and can be
stopped and restarted on that port (fault tests stop one mid-transfer).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
ALIAS = "mlx-sshd"  # the Host name client configs written here give the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], what: str, banner: bytes = b"",
                    timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start (status {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                if not banner or conn.recv(64).startswith(banner):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{what} did not start listening on port {port}")


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (sshd's per-connection children start their own sessions,
    so a process group kill would miss them)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    victims = _descendants(proc.pid)
    for pid in [proc.pid, *victims]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)


@dataclass
class SshServer:
    """OpenSSH's sshd as the current user, with a generated host key and user key.

    `dir` holds the keys, sshd_config and authorized_keys; `user_key` is the private key that
    logs in. Nothing touches the real ~/.ssh: clients are configured with `configure_client`.
    """

    dir: Path
    port: int = 0
    user: str = field(default_factory=getpass.getuser)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def user_key(self) -> Path:
        return self.dir / "id_ed25519"

    def host_key_line(self) -> str:
        """The known_hosts line for this server."""
        kind, blob = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {blob}\n"

    def setup(self) -> SshServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        for key, comment in ((self.host_key, "host"), (self.user_key, "user")):
            if not key.exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                                "-f", str(key)], check=True)
        shutil.copyfile(self.user_key.with_suffix(".pub"), self.dir / "authorized_keys")
        if not self.port:
            self.port = free_port()
        sftp = "internal-sftp"
        (self.dir / "sshd_config").write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.host_key}\n"
            f"PidFile {self.dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "MaxStartups 200\n"
            "MaxSessions 200\n"
            "LogLevel ERROR\n"
            f"Subsystem sftp {sftp}\n")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        return self

    def start(self) -> SshServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        log = open(self.dir / "sshd.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        _wait_listening(self.port, self.proc, "sshd", banner=b"SSH-")
        return self

    def stop(self) -> None:
        """Kill the server and every connection it serves (a crash, not a shutdown)."""
        if self.proc is not None:
            _kill_tree(self.proc)
            self.proc = None

    def configure_client(self, home: Path, *, known: bool = True) -> dict[str, str]:
        """Write `home/.ssh/config` (Host mlx-sshd -> this server, its user and key) and, if
        `known`, the server's key in `home/.ssh/known_hosts`. Returns environment variables
        that make git's own ssh use the same files (OpenSSH reads the passwd home, not $HOME).
        """
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        config = ssh_dir / "config"
        config.write_text(
            f"Host {ALIAS}\n"
            "  HostName 127.0.0.1\n"
            f"  Port {self.port}\n"
            f"  User {self.user}\n"
            f"  IdentityFile {self.user_key}\n"
            "  IdentitiesOnly yes\n")
        known_hosts = ssh_dir / "known_hosts"
        if known:
            known_hosts.write_text(self.host_key_line())
        return {"GIT_SSH_COMMAND": f"ssh -F {config} -o UserKnownHostsFile={known_hosts} "
                                   "-o BatchMode=yes"}


def forced_command_sshd(root: Path, authenticate: str, forced: str) -> SshServer:
    """A started sshd whose key runs the script `forced` (with `{bindir}` filled in) as a
    forced command, and a `git-lfs-authenticate` script `authenticate` in `root/bin`, which
    `forced` puts on the PATH: an SSH server that answers git-lfs-authenticate."""
    import stat

    bindir = root / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    script = bindir / "git-lfs-authenticate"
    script.write_text(authenticate)
    command = root / "forced.sh"
    command.write_text(forced.format(bindir=bindir))
    for path in (script, command):
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    server = SshServer(root / "sshd").setup()
    keys = server.dir / "authorized_keys"
    keys.write_text(f'command="{command}" {keys.read_text()}')
    return server.start()


@dataclass
class S3Server:
    """moto's S3 API server; `env` holds the fake credentials it accepts."""

    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    check_credentials: bool = False  # moto accepts any key unless told to authenticate
    env: dict[str, str] = field(default_factory=lambda: {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1"})

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        if self.proc is not None and self.proc.poll() is None:
            return self
        if not self.port:
            self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"} if self.check_credentials
            else None)
        _wait_listening(self.port, self.proc, "moto server")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _kill_tree(self.proc)
            self.proc = None

    def client(self) -> object:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name


# giftless (a Git LFS server in Python, PyPI `giftless`) is a Flask app: this starts it under
# Flask's threaded development server, configured by GIFTLESS_CONFIG_STR.
_GIFTLESS_MAIN = (
    "import sys, warnings\n"
    "warnings.simplefilter('ignore')\n"
    "from giftless.app import init_app\n"
    "init_app().run(host='127.0.0.1', port=int(sys.argv[1]), threaded=True)\n")


@dataclass
class GiftlessServer:
    """giftless on loopback with its local storage backend under `dir`.

    `auth` is "anonymous" (giftless's anonymous read-write provider: anyone reads and writes)
    or "jwt" (only its JWT provider: a request without a token signed by `jwt_key` gets 401;
    `token()` makes one). The LFS endpoint of repository `org/repo` is `endpoint("org/repo")`,
    the one git-lfs derives from `<base>/org/repo.git`.
    """

    dir: Path
    auth: str = "anonymous"
    action_lifetime: int = 900
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    jwt_key: str = "git-mlx-test-key"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def endpoint(self, repo: str = "org/repo") -> str:
        return f"{self.base}/{repo}.git/info/lfs"

    @property
    def storage(self) -> Path:
        return self.dir / "storage"

    def config(self) -> dict[str, object]:
        if self.auth == "anonymous":
            providers: list[object] = ["giftless.auth.allow_anon:read_write"]
        elif self.auth == "jwt":
            providers = [{"factory": "giftless.auth.jwt:factory",
                          "options": {"algorithm": "HS256", "private_key": self.jwt_key}}]
        else:
            raise ValueError(f"unknown giftless auth {self.auth!r}")
        return {
            "AUTH_PROVIDERS": providers,
            "LEGACY_ENDPOINTS": False,
            "TRANSFER_ADAPTERS": {"basic": {
                "factory": "giftless.transfer.basic_streaming:factory",
                "options": {"storage_class": "giftless.storage.local_storage:LocalStorage",
                            "storage_options": {"path": str(self.storage)},
                            "action_lifetime": self.action_lifetime}}},
            "PRE_AUTHORIZED_ACTION_PROVIDER": {
                "factory": "giftless.auth.jwt:factory",
                "options": {"algorithm": "HS256", "private_key": self.jwt_key,
                            "default_lifetime": self.action_lifetime}},
        }

    def token(self, repo: str = "org/repo", lifetime: int = 3600) -> str:
        """A JWT the "jwt" server accepts: read and write on every object of `repo`."""
        import jwt

        now = int(time.time())
        return str(jwt.encode({"sub": "tester", "iat": now, "nbf": now, "exp": now + lifetime,
                               "scopes": [f"obj:{repo}/*"]}, self.jwt_key, algorithm="HS256"))

    def start(self) -> GiftlessServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        import json

        self.dir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        if not self.port:
            self.port = free_port()
        env = {**os.environ, "GIFTLESS_CONFIG_STR": json.dumps(self.config())}
        env.pop("GIFTLESS_CONFIG_FILE", None)
        log = open(self.dir / "giftless.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _GIFTLESS_MAIN, str(self.port)], cwd=self.dir,
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        log.close()
        _wait_listening(self.port, self.proc, "giftless")
        self._wait_answering()
        return self

    def _wait_answering(self, timeout: float = 30) -> None:
        """Listening is not answering: wait for a batch request to get an HTTP answer."""
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            request = urllib.request.Request(
                self.endpoint() + "/objects/batch", method="POST",
                data=b'{"operation": "download", "objects": []}',
                headers={"Accept": "application/vnd.git-lfs+json",
                         "Content-Type": "application/vnd.git-lfs+json"})
            try:
                with urllib.request.urlopen(request, timeout=5):
                    return
            except urllib.error.HTTPError:
                return  # an answer (401 from the jwt server, say)
            except OSError:
                if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                    raise RuntimeError(f"giftless did not answer on port {self.port} "
                                       f"(log: {self.dir / 'giftless.log'})") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Kill the server (a crash: uploads in flight are cut)."""
        if self.proc is not None:
            _kill_tree(self.proc)
            self.proc = None
