#!/usr/bin/env bash
# The main job end to end on the zero-config default (a git remote on a local path), in a temp
# dir: track, commit, push, clone (hydrated), a 2% edit, push again, with the bytes stored.
set -euo pipefail

command -v git-mlx >/dev/null || { echo "git-mlx is not on PATH: run ./install.sh first" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/git-mlx-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
export GIT_AUTHOR_NAME="${GIT_AUTHOR_NAME:-git-mlx demo}" GIT_AUTHOR_EMAIL="${GIT_AUTHOR_EMAIL:-demo@example.com}"
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
cd "$work"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
size() { du -sb "$1" 2>/dev/null | cut -f1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

git init -q --bare -b main origin.git
git init -q -b main project
cd project
git remote add origin ../origin.git

step git mlx track '"*.pt"'
git mlx track "*.pt"

step "python3 (write a 64 MiB model-like file: half random, half repetitive float32 blocks)"
python3 - <<'PY'
import random, struct
rng = random.Random(42)
with open("model.pt", "wb") as f:
    for i in range(1024):
        if i % 2:
            f.write(rng.randbytes(65536))
        else:
            f.write(struct.pack("<16f", *[rng.gauss(0, 1) for _ in range(16)]) * 1024)
PY

step git add .gitattributes model.pt '&&' git commit -m v1
git add .gitattributes model.pt
git commit -q -m "v1: first model"
echo "git stores a $(git cat-file -s HEAD:model.pt)-byte pointer:"
git cat-file blob HEAD:model.pt | sed 's/^/    /'

step git push origin main
git push -q origin main

step git clone origin.git clone
cd .. && git clone -q origin.git clone && cd clone
cmp -s model.pt ../project/model.pt && echo "model.pt hydrated: byte-identical to the original"
echo "git status --porcelain: '$(git status --porcelain)'"
git mlx ls-files

step "v2: change 2% of the model in 4 places, commit, push"
cd ../project
python3 - <<'PY'
import os
with open("model.pt", "r+b") as f:
    for where in (5, 20, 41, 60):
        f.seek(where * 1048576)
        f.write(os.urandom(335544))
PY
git commit -q -am "v2: fine-tuned"
before=$(size ../origin.git/mlx)
git push -q origin main
after=$(size ../origin.git/mlx)

cd ../clone && git pull -q && cmp -s model.pt ../project/model.pt && echo "clone pulled v2, hydrated"

step "bytes stored"
file=$(stat -c %s ../project/model.pt)
printf '  model.pt (each version):           %s\n' "$(mib "$file")"
printf '  remote after v1 (origin.git/mlx):  %s\n' "$(mib "$before")"
printf '  remote after v2:                   %s  (v2 added %s)\n' "$(mib "$after")" "$(mib $((after - before)))"
printf '  git-lfs or DVC would store:        %s\n' "$(mib $((2 * file)))"
echo
echo "Demo done (work dir $work removed)."
