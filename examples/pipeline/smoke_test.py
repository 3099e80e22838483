"""CI smoke test: the committed model against the validation set, nothing else.

Needs only models/model.json and data/valid.csv (a CI job pulls just those two with
`git mlx pull --include`), checks the model is well-formed, and writes smoke/metrics.json for
the gate: `git mlx metrics check --file smoke/metrics.json 'accuracy>=0.8'`.
"""

from __future__ import annotations

import math
import sys

from common import load_model, metrics, predict, read_csv, write_json


def main() -> int:
    model = load_model()
    rows, labels = read_csv("data/valid.csv")
    if len(model["weights"]) != len(rows[0]):
        print(f"smoke: the model has {len(model['weights'])} weights but the data "
              f"{len(rows[0])} features", file=sys.stderr)
        return 1
    if not all(math.isfinite(v) for v in [*model["weights"], model["bias"]]):
        print("smoke: the model has non-finite weights", file=sys.stderr)
        return 1
    result = metrics(predict(model, rows), labels)
    write_json("smoke/metrics.json", result)
    print("smoke: " + ", ".join(f"{k} {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
