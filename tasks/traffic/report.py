"""Plain-text tables and CSV files of forecast errors."""
from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from graphcore.tasks.traffic.metrics import MaskedHorizonErrors


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table with columns padded to their widest cell."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write_horizon_csv(path: Path, columns: Mapping[str, MaskedHorizonErrors], interval_minutes: float) -> Path:
    """One row per (forecaster, horizon step): ``name, step, minutes, mae, rmse, mape``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "step", "minutes", "mae", "rmse", "mape"])
        for name, errors in columns.items():
            values = errors.compute()
            for h in range(errors.horizon):
                writer.writerow([name, h + 1, (h + 1) * interval_minutes,
                                 *(f"{float(values[m][h]):.4f}" for m in ("mae", "rmse", "mape"))])
    return path
