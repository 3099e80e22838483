#!/usr/bin/env bash
# The ML workflow end to end, in a temp dir with a local bare git remote (zero-config storage):
# repro, commit, push, two experiments, exp show, metrics diff, adopt the best one; then the CI
# recipe: a pointers-only clone pulls just the model and the validation set, runs the smoke
# test and gates on accuracy, and a model broken on purpose fails that gate; last, the training
# curves of every run drawn by `git mlx plots diff` into an HTML page and a PNG.
#
#     examples/pipeline/demo.sh [DIR]     # DIR: keep everything there (default: a temp dir, removed)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
command -v git-mlx >/dev/null || { echo "git-mlx is not on PATH: run ./install.sh first" >&2; exit 1; }
if [ $# -gt 0 ]; then
    work=$1
    mkdir -p "$work"
    work=$(cd "$work" && pwd)
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/git-mlx-pipeline.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi
export GIT_AUTHOR_NAME="${GIT_AUTHOR_NAME:-git-mlx demo}" GIT_AUTHOR_EMAIL="${GIT_AUTHOR_EMAIL:-demo@example.com}"
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
step() { printf '\n==> %s\n' "$*"; }
fail() { echo "demo: FAILED: $*" >&2; exit 1; }
is_pointer() { [ "$(head -c 17 "$1")" = "version git-mlx/1" ]; }

cd "$work"
git init -q --bare -b main origin.git
git init -q -b main project
cd project
git remote add origin ../origin.git
cp "$here"/*.py "$here"/params.yaml "$here"/.mlx.yaml "$here"/README.md .
git mlx install --local >/dev/null

step "git mlx repro (first run: every stage runs)"
git mlx repro
step "git mlx repro (second run: nothing changed, nothing runs)"
git mlx repro

step "git add -A && git commit && git push (the pre-push hook uploads data and model)"
git add -A
git commit -q -m "pipeline: first run"
git push -q -u origin main
git mlx ls-files

step "git mlx exp run -S train.lr=0.5 --name fast  (runs in a temporary worktree)"
git mlx exp run -S train.lr=0.5 --name fast
step "git mlx exp run -S train.lr=0.02 -S train.epochs=10 --name slow"
git mlx exp run -S train.lr=0.02 -S train.epochs=10 --name slow
step "git status --short (the work tree is untouched: nothing to show)"
test -z "$(git status --short)" || fail "exp run changed the work tree"
step "git mlx exp show"
git mlx exp show
step "git mlx metrics diff main exp/fast"
git mlx metrics diff main exp/fast
step "git mlx params diff main exp/fast"
git mlx params diff main exp/fast

step "adopt the best experiment: git merge --ff-only exp/fast && git push"
git merge -q --ff-only exp/fast
git push -q origin main
git mlx exp push origin fast slow

step "a broken model on purpose: git mlx exp run -S train.lr=0 --name broken && git mlx exp push"
git mlx exp run -S train.lr=0 --name broken
git mlx exp push origin broken

# ---- the CI recipe (examples/ci/github-actions.yml, docs/ci.md) -----------------------------
step "CI: GIT_MLX_SKIP_SMUDGE=1 git clone (pointers only)"
cd "$work"
GIT_MLX_SKIP_SMUDGE=1 git clone -q origin.git ci
cd ci
git mlx install --local >/dev/null    # a CI runner would run `git mlx install` (for the user)
is_pointer data/train.csv && is_pointer models/model.json || fail "the clone was hydrated"
step "CI: git mlx pull --include 'models/**' --include data/valid.csv"
git mlx pull --include 'models/**' --include data/valid.csv
is_pointer data/train.csv || fail "the training data was downloaded"
is_pointer data/valid.csv && fail "data/valid.csv is still a pointer"
is_pointer models/model.json && fail "models/model.json is still a pointer"
echo "data/train.csv is still a $(wc -c <data/train.csv)-byte pointer; model and validation set pulled"
step "CI: python3 smoke_test.py && git mlx metrics check --file smoke/metrics.json 'accuracy>=0.8'"
python3 smoke_test.py
git mlx metrics check --file smoke/metrics.json 'accuracy>=0.8'

step "CI on the broken model: the gate fails with exit 1"
git fetch -q origin exp/broken
GIT_MLX_SKIP_SMUDGE=1 git checkout -q FETCH_HEAD
git mlx pull --include 'models/**' --include data/valid.csv
python3 smoke_test.py
status=0
git mlx metrics check --file smoke/metrics.json 'accuracy>=0.8' || status=$?
[ "$status" -eq 1 ] || fail "the gate should exit 1 on the broken model, not $status"
echo "the gate rejected the broken model (exit 1), as CI would"

step "git mlx plots diff HEAD~1 --all-experiments --png (training curves: first run, workspace, experiments)"
cd "$work/project"
git mlx plots diff HEAD~1 --all-experiments --png -o "$work/plots" | tee "$work/plots.txt"
page=$(head -n 1 "$work/plots.txt")
[ -s "$page" ] && [ -s "$work/plots/plots_train.csv.png" ] || fail "no plot was written"
echo "open $page in a browser (it works offline)"

step "done"
echo "Everything above ran in $work"
