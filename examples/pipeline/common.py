"""Shared by the stages: reading params and CSV files, the model's prediction, the metrics.

Standard library only, so the example runs wherever git-mlx does.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from operator import mul


def load_params(section: str) -> dict:
    """One section of params.yaml. The file is plain YAML, but the example parses the simple
    `key: value` subset itself so that it needs no third-party package."""
    params: dict[str, dict] = {}
    current: dict | None = None
    with open("params.yaml", encoding="utf-8") as f:
        for raw in f:
            line = raw.split("#", 1)[0].rstrip()
            if not line.strip():
                continue
            key, _, value = line.strip().partition(":")
            if not line.startswith((" ", "\t")):
                current = params.setdefault(key, {})
            elif current is not None:
                current[key] = _scalar(value.strip())
    return params[section]


def _scalar(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(text, text.strip("'\""))


def write_csv(path: str, rows: Sequence[Sequence[float]], labels: Sequence[int]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow([f"x{i}" for i in range(len(rows[0]))] + ["label"])
        for row, label in zip(rows, labels):
            out.writerow([f"{v:.6f}" for v in row] + [label])


def read_csv(path: str) -> tuple[list[list[float]], list[int]]:
    with open(path, newline="", encoding="utf-8") as f:
        if f.readline().startswith("version git-mlx/"):
            raise SystemExit(f"{path} is a git-mlx pointer: run `git mlx pull --include {path}`")
        reader = csv.reader(f)
        rows, labels = [], []
        for record in reader:
            rows.append([float(v) for v in record[:-1]])
            labels.append(int(record[-1]))
    return rows, labels


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def predict(model: dict, rows: Sequence[Sequence[float]]) -> list[float]:
    """P(label = 1) for each row."""
    w, b = model["weights"], model["bias"]
    return [sigmoid(sum(map(mul, w, row)) + b) for row in rows]


def load_model(path: str = "models/model.json") -> dict:
    """The model's weights; a clear exit (1) when the file is not one, e.g. still a git-mlx
    pointer because it was not pulled."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        model = json.loads(text)
    except ValueError:
        model = None
    if not isinstance(model, dict) or not isinstance(model.get("weights"), list) or "bias" not in model:
        pointer = text.startswith("version git-mlx/")
        raise SystemExit(f"{path}: not a model file" + (
            " but a git-mlx pointer: run `git mlx pull --include 'models/**'`" if pointer else ""))
    return model


def metrics(probs: Sequence[float], labels: Sequence[int]) -> dict[str, float]:
    """Accuracy, log loss, precision and recall at the 0.5 threshold."""
    eps = 1e-12
    tp = fp = fn = correct = 0
    loss = 0.0
    for p, y in zip(probs, labels):
        guess = 1 if p >= 0.5 else 0
        correct += guess == y
        tp += guess == 1 and y == 1
        fp += guess == 1 and y == 0
        fn += guess == 0 and y == 1
        loss -= math.log(max(p, eps)) if y else math.log(max(1.0 - p, eps))
    n = len(labels)
    return {
        "accuracy": round(correct / n, 6),
        "loss": round(loss / n, 6),
        "precision": round(tp / (tp + fp), 6) if tp + fp else 0.0,
        "recall": round(tp / (tp + fn), 6) if tp + fn else 0.0,
    }


def write_json(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
