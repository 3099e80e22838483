#!/usr/bin/env bash
# Install git-mlx from this checkout, for root or an ordinary user; safe to run again.
#
#   bash install.sh [--test] [--no-demo]
#
#   --test     also install the test tools (pytest, hypothesis, moto, ruff, mypy: `.[test]`)
#   --no-demo  do not run demo/quickstart.sh afterwards
#
# Where the package goes:
#   in a virtualenv, or as root        python3 -m pip install
#   an ordinary user                   python3 -m pip install --user
#   pip refuses (PEP 668, "externally managed", e.g. Debian's own python3):
#                                      a venv at ~/.local/share/git-mlx/venv, with its git-mlx
#                                      linked into ~/.local/bin
# Then: the directory holding git-mlx goes on PATH for new shells (~/.profile, ~/.bashrc) if it
# is not a system directory, `git mlx install` configures git for this user, and the demo runs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HOME/.local/share/git-mlx/venv"
LOCAL_BIN="$HOME/.local/bin"
WITH_TEST=0
DEMO=1
SUMMARY=()

usage() { sed -n '2,7s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
say() { printf '==> %s\n' "$*"; }
note() { SUMMARY+=("$*"); }
die() {
    printf 'install.sh: %s\n' "$1" >&2
    [ $# -lt 2 ] || printf '  %s\n' "${@:2}" >&2
    exit 1
}

for arg in "$@"; do
    case "$arg" in
        --test) WITH_TEST=1 ;;
        --no-demo) DEMO=0 ;;
        -h | --help) usage; exit 0 ;;
        *) printf 'install.sh: unknown option: %s\n\n' "$arg" >&2; usage >&2; exit 2 ;;
    esac
done

export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1
HAVE_APT=0
command -v apt-get >/dev/null 2>&1 && HAVE_APT=1

apt_install() {  # quietly install Debian packages (root only); a failure is the caller's call
    [ "$IS_ROOT" -eq 1 ] && [ "$HAVE_APT" -eq 1 ] || return 1
    say "apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@"; } >/dev/null
}

# ---------------------------------------------------------------- prerequisites
command -v git >/dev/null 2>&1 \
    || die "git is not installed." "Debian/Ubuntu: sudo apt-get install git"
command -v python3 >/dev/null 2>&1 \
    || die "python3 is not installed; git-mlx needs Python 3.11 or newer." \
           "Debian/Ubuntu: sudo apt-get install python3 python3-pip python3-venv"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "git-mlx needs Python 3.11 or newer; python3 is $(python3 -V 2>&1)." \
           "Install a newer Python (e.g. Debian 12 ships 3.11) and put it first on PATH as python3."
IN_VENV=$(python3 -c 'import sys; print(int(sys.prefix != sys.base_prefix))')

if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_install python3-pip python3-venv || true
    python3 -m pip --version >/dev/null 2>&1 || python3 -m ensurepip --user >/dev/null 2>&1 \
        || die "pip is not available for python3." \
               "Debian/Ubuntu: sudo apt-get install python3-pip python3-venv"
fi

# The C chunker (gitext/storage/_cdc.c) needs a compiler and Python's headers; without them setup.py
# falls back to the pure-Python chunker (same results, slower).
has_headers() {
    python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'
}
if ! command -v gcc >/dev/null 2>&1 || ! has_headers; then
    if apt_install python3-dev gcc && command -v gcc >/dev/null 2>&1 && has_headers; then
        note "Installed gcc and python3-dev for the C chunker."
    else
        note "No C compiler or Python headers: using the pure-Python chunker (slower)." \
             "For the fast one: sudo apt-get install gcc python3-dev, then run this again."
    fi
fi

# The benchmark (bench/, also run by the test suite) compares against git-lfs and uses zstd.
missing_tools=()
for tool in git-lfs zstd; do command -v "$tool" >/dev/null 2>&1 || missing_tools+=("$tool"); done
if [ "${#missing_tools[@]}" -gt 0 ]; then
    if apt_install "${missing_tools[@]}"; then
        note "Installed ${missing_tools[*]} (the benchmark's peers and floors)."
    else
        note "Not installed: ${missing_tools[*]} (only the benchmark, bench/, needs them):" \
             "sudo apt-get install ${missing_tools[*]}"
    fi
fi

# ---------------------------------------------------------------- the package
SPEC="$HERE"
[ "$WITH_TEST" -eq 1 ] && SPEC="$HERE[test]"
LOG="$(mktemp "${TMPDIR:-/tmp}/git-mlx-install.XXXXXX")"
trap 'rm -f "$LOG"' EXIT

pip_install() {  # pip_install PYTHON [ARGS...]: quiet, but show pip's output on failure
    local python="$1"
    shift
    "$python" -m pip install -q "$@" "$SPEC" >"$LOG" 2>&1
}

install_in_venv() {
    say "pip refuses to install into this Python (PEP 668); using a venv at $VENV"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        apt_install python3-venv || true
        rm -rf "$VENV"
        python3 -m venv "$VENV" >/dev/null 2>&1 \
            || die "could not create a virtualenv at $VENV." \
                   "Debian/Ubuntu: sudo apt-get install python3-venv, then run this again."
    fi
    pip_install "$VENV/bin/python" || { cat "$LOG" >&2; die "pip install into $VENV failed (above)."; }
    mkdir -p "$LOCAL_BIN"
    ln -sfn "$VENV/bin/git-mlx" "$LOCAL_BIN/git-mlx"
    BIN_DIR="$LOCAL_BIN"
    PY="$VENV/bin/python"
    MODE="virtualenv $VENV (git-mlx linked into $LOCAL_BIN)"
}

PY=python3
if [ "$IN_VENV" -eq 1 ] || [ "$IS_ROOT" -eq 1 ]; then
    PIP_ARGS=()
    BIN_DIR="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
    MODE="$( [ "$IN_VENV" -eq 1 ] && echo "the active virtualenv" || echo "the system Python (root)")"
else
    PIP_ARGS=(--user)
    BIN_DIR="$(python3 -m site --user-base)/bin"
    MODE="your user site-packages (pip --user)"
fi

say "Installing git-mlx from $HERE$( [ "$WITH_TEST" -eq 1 ] && echo ' (with test extras)')"
if ! pip_install python3 "${PIP_ARGS[@]}"; then
    if grep -q "externally-managed-environment" "$LOG"; then
        install_in_venv
    else
        cat "$LOG" >&2
        die "pip install failed (above)."
    fi
fi

# pip may put scripts elsewhere than sysconfig says (e.g. Debian's /usr/local/bin for root)
if [ ! -x "$BIN_DIR/git-mlx" ]; then
    for dir in "$LOCAL_BIN" /usr/local/bin /usr/bin; do
        if [ -x "$dir/git-mlx" ]; then BIN_DIR="$dir"; break; fi
    done
fi
[ -x "$BIN_DIR/git-mlx" ] || die "installed, but the git-mlx command was not found (looked in $BIN_DIR)."
note "Installed into $MODE; the command is $BIN_DIR/git-mlx."
if (cd / && "$PY" -c 'import gitext.storage._cdc' 2>/dev/null); then
    note "The C chunker is built."
else
    note "The C chunker did not compile: using the pure-Python one (slower)."
fi

# ---------------------------------------------------------------- PATH
case "$BIN_DIR" in
    /usr/bin | /bin | /usr/local/bin) ;;  # on every login shell's PATH already
    *)
        line="case \":\$PATH:\" in *\":$BIN_DIR:\"*) ;; *) export PATH=\"$BIN_DIR:\$PATH\" ;; esac  # git-mlx"
        for rc in "$HOME/.profile" "$HOME/.bashrc"; do
            if [ -f "$rc" ] && grep -qF -- "$line" "$rc"; then
                continue
            fi
            printf '\n%s\n' "$line" >>"$rc"
            note "Added $BIN_DIR to PATH in $rc (new shells; now: source $rc)."
        done
        ;;
esac
case ":$PATH:" in
    *":$BIN_DIR:"*) ;;
    *) export PATH="$BIN_DIR:$PATH" ;;
esac

# ---------------------------------------------------------------- man page
# `git mlx --help` is turned by git into `man git-mlx`: put the page where man looks.
if [ "$(id -u)" -eq 0 ]; then man_dir=/usr/local/share/man/man1; else man_dir="$HOME/.local/share/man/man1"; fi
if mkdir -p "$man_dir" 2>/dev/null && cp "$HERE/man/git-mlx.1" "$man_dir/git-mlx.1" 2>/dev/null; then
    note "Man page installed in $man_dir (git mlx --help)."
fi

# ---------------------------------------------------------------- git config, demo
say "git mlx install"
(cd / && git mlx install)   # from outside any repository: global config only
note "git is configured for git-mlx (global filter; hooks are added to each repository)."

status=0
if [ "$DEMO" -eq 1 ]; then
    if [ -f "$HERE/demo/quickstart.sh" ]; then
        say "Running the demo (demo/quickstart.sh)"
        if bash "$HERE/demo/quickstart.sh"; then
            note "The demo ran successfully."
        else
            status=$?
            note "The demo FAILED (exit $status); see its output above."
        fi
    else
        note "No demo/quickstart.sh in this checkout yet: demo skipped."
    fi
fi

echo
say "Summary"
for line in "${SUMMARY[@]}"; do
    printf '    %s\n' "$line"
done
printf '    %s\n' "Next: in a repository, git mlx track '*.pt' && git add .gitattributes"
exit "$status"
