"""Stage `prepare`: a synthetic binary classification dataset, the same for the same params.

A few informative features drive a hidden logit, the rest are noise; the label is the sign of
the logit plus Gaussian noise. Written as data/train.csv and data/valid.csv (a few MB: large
enough that git-mlx, not git, stores them).
"""

from __future__ import annotations

import random

from common import load_params, write_csv


def main() -> None:
    p = load_params("prepare")
    rng = random.Random(p["seed"])
    n, d, k = p["n_samples"], p["n_features"], p["informative"]
    true_w = [rng.uniform(0.5, 2.0) * rng.choice((-1, 1)) for _ in range(k)] + [0.0] * (d - k)
    scales = [rng.choice((0.5, 1.0, 3.0)) for _ in range(d)]  # uneven scales: the lr matters
    rows, labels = [], []
    for _ in range(n):
        x = [rng.gauss(0.0, 1.0) for _ in range(d)]
        logit = sum(w * v for w, v in zip(true_w, x)) + rng.gauss(0.0, p["noise"])
        rows.append([v * s for v, s in zip(x, scales)])
        labels.append(1 if logit > 0 else 0)
    cut = int(n * (1.0 - p["valid_fraction"]))
    write_csv("data/train.csv", rows[:cut], labels[:cut])
    write_csv("data/valid.csv", rows[cut:], labels[cut:])
    print(f"prepare: {cut} training and {n - cut} validation rows, {d} features")


if __name__ == "__main__":
    main()
