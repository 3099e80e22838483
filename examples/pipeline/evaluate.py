"""Stage `evaluate`: the model's metrics on the validation set -> eval/metrics.json.

`git mlx metrics show|diff` and `git mlx exp show` read that file from each commit.
"""

from __future__ import annotations

from common import load_model, metrics, predict, read_csv, write_json


def main() -> None:
    model = load_model()
    rows, labels = read_csv("data/valid.csv")
    result = metrics(predict(model, rows), labels)
    write_json("eval/metrics.json", result)
    print("evaluate: " + ", ".join(f"{k} {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
