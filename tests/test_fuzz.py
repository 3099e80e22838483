"""Coverage-guided fuzzing (atheris) of every parser, complementing the hypothesis tests.

Each target of tests/fuzz_targets.py runs a short libFuzzer campaign in its own process
(atheris.Setup/Fuzz own the process and end it with sys.exit), seeded with real artifacts: a
pointer and a manifest made by the Store, a pack index made by encode_index, an index written
by git, a filter-protocol transcript. The campaigns run side by side, so the module takes
about CAMPAIGN_SECONDS plus start-up. A failing campaign shows libFuzzer's report: the
traceback and the input (also in bytes, to paste into REGRESSIONS below).

Inputs that once broke a target are replayed in-process by the regression tests.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlxtest import ROOT

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fuzz_targets  # noqa: E402  (needs the tests directory on sys.path; atheris is not imported)

CAMPAIGN_SECONDS = 5
PER_INPUT_SECONDS = 10
HANG_SECONDS = 10
SEP = fuzz_targets.SEP


# -- seeds: real artifacts in each target's input format (see the target's docstring) ----------
def _pkts(*items: str | bytes | None) -> bytes:
    """str: a text packet (LF added); bytes: a raw packet; None: a flush packet."""
    out = []
    for item in items:
        if item is None:
            out.append(b"0000")
        else:
            raw = item.encode() + b"\n" if isinstance(item, str) else item
            out.append(b"%04x" % (len(raw) + 4) + raw)
    return b"".join(out)


def _env(home: Path) -> dict[str, str]:
    """This environment without git's or git-mlx's variables, HOME in a temp dir: the module's
    fixture runs before the per-test scrubbing (conftest.py) applies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "XDG_CONFIG"))}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", PYTHONPATH=str(ROOT),
               GIT_AUTHOR_NAME="Fuzz", GIT_AUTHOR_EMAIL="fuzz@example.com",
               GIT_COMMITTER_NAME="Fuzz", GIT_COMMITTER_EMAIL="fuzz@example.com")
    return env


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=_env(cwd), check=True, capture_output=True)


def _git_index(base: Path, version: str, fmt: str) -> bytes:
    """The index git writes for a few files (one intent-to-add, for the extended flags)."""
    repo = base / f"repo-v{version}-{fmt}"
    _git(base, "init", "-q", f"--object-format={fmt}", str(repo))
    for name, data in {"a.txt": b"alpha\n", "dir/b.bin": b"beta" * 50, "dir/sub/c": b"",
                       "longer-name-" * 8: b"x\n"}.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(data)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "seed")
    (repo / "later.txt").write_text("later\n")
    _git(repo, "add", "-N", "later.txt")
    _git(repo, "update-index", "--index-version", version)
    return (repo / ".git" / "index").read_bytes()


def seeds(base: Path) -> dict[str, list[bytes]]:
    from gitext.formats.pktline import PktLineWriter
    from gitext.storage.packs import build
    from gitext.storage.store import FILES, Store, StoreSettings

    content = base / "model.bin"
    content.write_bytes(random.Random(6).randbytes(24 << 10))
    store = Store(base / "store", StoreSettings(min_chunk=256, avg_chunk=1024, max_chunk=4096))
    ptr = store.add_file(content)
    small = base / "small.txt"
    small.write_bytes(b"one chunk\n")
    small_ptr = store.add_file(small)
    manifest = store.path(FILES, ptr.oid).read_bytes()
    body = manifest[: manifest.rindex(b"checksum sha256:")]
    chunk_ids = [c.id for c in store.read_manifest(ptr.oid).chunks]
    _, _, index, _ = build(store, chunk_ids[:5])
    stream: list[bytes] = []
    writer = PktLineWriter(stream.append)
    writer.text("git-filter-client")
    writer.text("version=2")
    writer.flush_pkt()
    writer.data(b"\x00\xff content " * 10)
    writer.packet(b"A")
    writer.flush_pkt()
    pktlines = b"".join(stream) + b"000Aabcdef0004" + b"0000"

    handshake = _pkts("git-filter-client", "version=2", None, "capability=clean",
                      "capability=smudge", "capability=delay", None)
    requests = (_pkts("command=clean", "pathname=model.bin", None, b"weights " * 20, b"tail", None)
                + _pkts("command=smudge", "pathname=a.bin", "can-delay=1", None, ptr.encode(), None)
                + _pkts("command=smudge", "pathname=b.bin", "blob=" + "0" * 40, None, None)
                + _pkts("command=list_available_blobs", None))
    settings = (b"remote: storage\nremotes:\n  storage:\n    url: s3://bucket/models\n"
                b"    endpoint_url: http://localhost:9000\n  backup:\n    url: ssh://me@host:2222/~/mlx\n"
                b"cache:\n  dir: ../shared-cache\nchunking: {min_size: 65536, avg_size: 262144, "
                b"max_size: 1048576}\ncompression: {level: 3}\ntransfer: {jobs: 4, sync: false}\n"
                b"hydrate: {direct_min_size: 8388608}\n")
    local = b"remotes:\n  mine:\n    url: /srv/models\nremote: mine\n"
    project = (b"metrics: [eval/metrics.json, metrics.json]\nparams: [params.yaml]\nstages:\n"
               b"  train:\n    cmd: python train.py\n    deps: [train.py, data/prepared]\n"
               b"    params: [train.lr, {params.yaml: [seed]}, {other.yaml: []}]\n"
               b"    outs: [models/model.pkl]\n    metrics: [metrics.json]\n")
    pipeline = b"stages:\n  prepare:\n    cmd: python prepare.py\n    params: train\n"
    params = b"train:\n  lr: 0.01\n  epochs: 10\n  layers: [64, 32]\nseed: 42\n"
    metrics = b'{"loss": 0.25, "acc": {"top1": 0.91, "top5": 0.99}, "note": "ok", "n": null}'
    indexes = {(v, f): _git_index(base, v, f) for v, f in (("2", "sha1"), ("3", "sha256"), ("4", "sha1"))}
    return {
        "pointer": [ptr.encode(), small_ptr.encode()],
        "pktline": [bytes([mode]) + pktlines for mode in range(4)],
        "manifest": [b"\x03" + body, b"\x02" + manifest, b"\x00" + manifest,
                     b"\x03" + body.replace(b"manifest/1", b"manifest/2") + b"bases 1\n"
                     + b"f" * 64 + b" 5\n"],  # format 2: a file with one base
        "packindex": [b"\x01" + index, b"\x00" + index],
        "config": [settings + SEP + local, settings, b"cache: {dir: ~/mlx-cache}\n" + SEP],
        "urls": [u.encode() for u in ("s3://bucket/prefix/", "ssh://user@[::1]:2222/~/repo",
                                      "host:relative/path", "file:///srv/models", "./a:b",
                                      "chunks/ab/" + ptr.oid, "git+ssh://h/p%20q")],
        "mlvalues": [b"\x00" + metrics, b"\x01" + params, b"\x03" + b"# empty\n"],
        "mlproject": [SEP.join([project, b"", params, metrics]), SEP.join([b"", pipeline, params])],
        "gitindex": [b"\x00" + indexes["2", "sha1"], b"\x01" + indexes["4", "sha1"][:-20],
                     b"\x02" + indexes["3", "sha256"][:-32], b"\x03" + indexes["2", "sha1"][:-20]],
        "filter": [bytes([mode]) + handshake + requests for mode in (0, 1, 2, 4, 8, 16, 32, 65)],
        "tensors": [bytes([mode]) + blob for mode, blob in enumerate(tensor_files())],
    }


def tensor_files() -> list[bytes]:
    """A safetensors file, an .npy, a GGUF, a torch.save-shaped zip and an .npz (test_tensors)."""
    from test_tensors import VALID

    return VALID


@pytest.fixture(scope="module")
def seed_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    return seeds(tmp_path_factory.mktemp("seeds"))


def test_seeds_are_what_the_targets_accept(seed_inputs: dict[str, list[bytes]]) -> None:
    """The seeds reach the interesting paths: the parsers accept them as they are."""
    from gitext.formats.manifest import Manifest
    from gitext.formats.packindex import decode_index
    from gitext.formats.tensors import detect_layout
    from gitext.git import index as gitindex

    made = seed_inputs
    assert set(made) == set(fuzz_targets.TARGETS)
    manifest = made["manifest"][1][1:]
    oid = manifest.split(b"oid sha256:")[1][:64].decode()
    assert Manifest.decode(manifest, oid).size == 24 << 10
    index = made["packindex"][0][1:]
    assert len(decode_index(index, hashlib.sha256(index).hexdigest())) == 5
    assert gitindex.parse(made["gitindex"][0][1:])[1] == 20
    assert all(detect_layout(lambda o, n, d=d[1:]: d[o:o + n], len(d) - 1) for d in made["tensors"])
    for name, inputs in made.items():
        for data in inputs:
            fuzz_targets.TARGETS[name](data)


# -- campaigns --------------------------------------------------------------------------------
@dataclass
class Campaign:
    proc: subprocess.Popen[bytes]
    log: Path
    artifacts: Path


def _atheris_missing() -> str | None:
    try:
        import atheris  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as exc:
        return (f"atheris cannot be imported ({exc}), so the fuzz campaigns cannot run: "
                "pip install atheris (or pip install -e '.[test]')")
    return None


@pytest.fixture(scope="module")
def campaigns(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              seed_inputs: dict[str, list[bytes]]) -> Iterator[dict[str, Campaign]]:
    """The campaign of every selected target, started at once; each test waits for its own."""
    missing = _atheris_missing()
    if missing:
        pytest.fail(missing)
    selected = {item.callspec.params["target"] for item in request.session.items
                if getattr(item, "originalname", "") == "test_campaign" and hasattr(item, "callspec")}
    base = tmp_path_factory.mktemp("fuzz")
    env = {**_env(base), "TMPDIR": str(base)}  # the targets' scratch files (fuzz_targets.scratch)
    started: dict[str, Campaign] = {}
    for name, inputs in seed_inputs.items():
        if name not in selected:
            continue
        corpus, artifacts = base / "corpus" / name, base / "artifacts" / name
        corpus.mkdir(parents=True)
        artifacts.mkdir(parents=True)
        for data in inputs:
            (corpus / hashlib.sha1(data).hexdigest()).write_bytes(data)
        log = base / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, str(HERE / "fuzz_targets.py"), name,
                 f"-max_total_time={CAMPAIGN_SECONDS}", f"-timeout={PER_INPUT_SECONDS}",
                 "-rss_limit_mb=2048", f"-artifact_prefix={artifacts}/", str(corpus)],
                cwd=base, env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        started[name] = Campaign(proc, log, artifacts)
    yield started
    for campaign in started.values():
        if campaign.proc.poll() is None:
            campaign.proc.kill()
            campaign.proc.wait()


def test_atheris_is_installed() -> None:
    missing = _atheris_missing()
    assert missing is None, missing


@pytest.mark.parametrize("target", list(fuzz_targets.TARGETS))
def test_campaign(campaigns: dict[str, Campaign], target: str) -> None:
    """libFuzzer exits 0 when no input made the target raise, hang or run out of memory."""
    campaign = campaigns[target]
    try:
        code = campaign.proc.wait(timeout=CAMPAIGN_SECONDS + 4 * PER_INPUT_SECONDS + 60)
    except subprocess.TimeoutExpired:
        campaign.proc.kill()
        code = campaign.proc.wait()
    log = campaign.log.read_text(errors="replace")
    if code != 0:
        found = [f"{p.name}: {p.read_bytes()!r:.4000}" for p in sorted(campaign.artifacts.iterdir())]
        report = "\n".join(line for line in log.splitlines()
                           if not line.startswith(("INFO: Instrumenting", "#")))
        pytest.fail(f"fuzz target {target!r} failed (exit {code}); inputs saved by libFuzzer:\n"
                    + "\n".join(found or ["(none)"]) + "\n--- libFuzzer output ---\n" + report[-6000:],
                    pytrace=False)
    assert "Done " in log, log[-2000:]  # it really fuzzed, and stopped on its time limit


# -- regressions: inputs that once broke a target -----------------------------------------------
def _laughs(levels: int) -> bytes:
    """YAML whose aliases nest `levels` deep: 2**levels leaves once expanded ("billion laughs")."""
    lines = ["a0: &a0 {x: 1, y: 2}"]
    lines += [f"a{i}: &a{i} {{x: *a{i - 1}, y: *a{i - 1}}}" for i in range(1, levels)]
    return ("\n".join(lines) + "\n").encode()


# (target, input, why). Each is a bug in gitext that these campaigns found ("fuzz") or that
# reading the code they pointed at found ("review"); the test passes once the bug is fixed.
# The file and line to fix are in each reason.
REGRESSIONS: list[tuple[str, bytes, str]] = [
    # -- settings (gitext/repo/config.py) --
    ("config", b"\x8a\n", "fuzz: a non-UTF-8 .mlx.yaml raises UnicodeDecodeError from "
     "load_yaml's path.read_text (config.py:55); want UsageError naming the file"),
    ("config", b"cache: {dir: ~mlc/x-ache}\n", "fuzz: cache.dir naming an unknown user's home "
     "raises RuntimeError from Path.expanduser in Config.cache_dir (config.py:162)"),
    ("config", b'cache: {dir: "~\\0"}\n', "review: a NUL in cache.dir raises ValueError from "
     "Path.expanduser in Config.cache_dir (config.py:162)"),
    ("config", b"a: 2001-13-45\n", "review: yaml.safe_load raises ValueError (not YAMLError) "
     "for an impossible date; load_yaml catches only YAMLError (config.py:61)"),
    ("config", b"a: " + b"1" * 5000 + b"\n", "review: an integer of over 4300 digits raises "
     "ValueError from yaml.safe_load in load_yaml (config.py:61)"),
    ("config", b"[" * 1000, "review: deep nesting raises RecursionError from yaml.safe_load in "
     "load_yaml (config.py:61)"),
    # -- remote URLs (gitext/repo/config.py, gitext/formats/urls.py) --
    ("urls", b"~`", "fuzz: local_path_from_url raises RuntimeError from Path.expanduser for an "
     "unknown user's home (config.py:102), e.g. a git remote url ~nobody/repo.git"),
    ("urls", b"~\x00", "fuzz: local_path_from_url raises ValueError (embedded null byte) from "
     "Path.expanduser (config.py:102)"),
    ("urls", b"file://[", "fuzz: local_path_from_url raises ValueError (Invalid IPv6 URL) from "
     "urlparse (config.py:95), e.g. for a git remote url file://[x"),
    ("urls", b"[[x]:p", "fuzz: parse_url accepts host '[x' but its canonical form "
     "ssh://%5Bx/~/p is refused by ssh_target (formats/urls.py, _BAD_NAME_RE lets "
     "'[' and ']' into host names)"),
    # -- ML project files (gitext/ml/mlfiles.py) --
    ("mlvalues", b"\x00" + b"[" * 1000, "review: deep JSON raises RecursionError from json.loads "
     "in parse_values (mlfiles.py:63), which catches ValueError and YAMLError only"),
    ("mlvalues", b"\x01" + b"[" * 1000, "review: deep YAML raises RecursionError from "
     "yaml.safe_load in parse_values (mlfiles.py:63)"),
    ("mlvalues", b"\x01a: &a {b: *a}\n", "review: a mapping that contains itself (YAML alias) "
     "makes flatten recurse for ever: RecursionError (mlfiles.py:45)"),
    ("mlproject", b"metrics: [" + b"m" * 300 + b".json]\n", "fuzz: a metrics path longer than "
     "NAME_MAX raises OSError (ENAMETOOLONG) from Source.read (mlfiles.py:123), which catches "
     "FileNotFoundError, NotADirectoryError and IsADirectoryError only"),
    ("mlproject", b'metrics: ["a\\0b.json"]\n', "review: a NUL in a declared path raises "
     "ValueError (embedded null byte) from Source.read (mlfiles.py:123)"),
    ("mlproject", b"&mRe\n? 2001-00-14", "fuzz (after the fixes above): an impossible date in "
     ".mlx.yaml raises ValueError from yaml.safe_load in _load (mlfiles.py:209-210), which "
     "catches YAMLError only"),
    ("mlproject", SEP + b"[" * 1000, "review: deep nesting in pipeline.yaml raises RecursionError "
     "from yaml.safe_load in _load (mlfiles.py:209)"),
    # -- the git index (gitext/git/index.py) --
    ("gitindex", b"\x04DIRC\x00\x00\x00\x04\x00\x00\x00\x05\x01" + bytes(8) + b"(\x00\x01"
     + bytes(164) + b"\x04I" + bytes(13) + b"\x95\x00\x00\x00\x00\x00@" + bytes(55) + b"+"
     + bytes(101) + b"\x04I" + bytes(14) + b"\x95\x00\x00\x00\x00\x00@\x00\x00",
     "fuzz: with an all-zero trailer (index.skipHash) parse guesses the hash size, SHA-1 first "
     "(git/index.py, parse); this SHA-256 index reads as SHA-1 once refresh has written stat "
     "data, so a refresh can patch the wrong bytes. Refuse an index that parses both ways, or "
     "take the hash size from the repository's objectFormat"),
    # -- tensor layouts (gitext/formats/tensors.py) --
    ("tensors", b"\x03PK\x03\x04\x14yPK\x05\x06\x00\x00\x00  $ ", "fuzz: a zip shorter than an "
     "end record made the record search's bound negative (a slice from the end), then "
     "struct.error in _zip_members"),
    ("tensors", b"\x00PK\x03\x04" + bytes(10) + b"PK\x05\x06" + bytes(17), "fuzz (hand-run "
     "mutations): an end-record signature in the last 21 bytes raised struct.error"),
]


@pytest.mark.parametrize(("target", "data", "why"), REGRESSIONS,
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(REGRESSIONS)])
def test_regression(target: str, data: bytes, why: str) -> None:
    fuzz_targets.TARGETS[target](data)


# (target, input, why): inputs that made a target run for ever (or nearly: exponential time).
HANGS: list[tuple[str, bytes, str]] = [
    ("mlvalues", b"\x01" + _laughs(26), "review: YAML aliases that double at each level "
     "(\"billion laughs\", 700 bytes) make flatten produce 2**26 keys: minutes and gigabytes "
     "(mlfiles.py:40-48); cap the number of values, or refuse aliases to mappings"),
]


@pytest.mark.parametrize(("target", "data", "why"), HANGS, ids=[f"{h[0]}-{i}" for i, h in enumerate(HANGS)])
def test_regression_no_hang(tmp_path: Path, target: str, data: bytes, why: str) -> None:
    """Replayed in a process that can be killed: the target must return within HANG_SECONDS."""
    (tmp_path / "input").write_bytes(data)
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import fuzz_targets; "
            f"fuzz_targets.TARGETS[{target!r}](open({str(tmp_path / 'input')!r}, 'rb').read())")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=HANG_SECONDS,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        pytest.fail(f"{target} still runs after {HANG_SECONDS} s on {len(data)} bytes ({why})")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
