"""How the traffic task's seasonal prior was built, one choice at a time, on Los-loop.

Each row adds one choice to the row above and reports the prior's masked MAE (no network) on the
validation and test windows: at 60 minutes and averaged over the 24 steps. The choices were made
on the validation columns; the test columns show whether they carried over. About 30 s.

    python benchmarks/traffic_prior.py [--data PATH] [--out results/traffic_prior.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from graphcore.datasets.traffic import LOS_LOOP, load_traffic, split_windows  # noqa: E402
from graphcore.tasks.traffic.baselines import fit_seasonal_prior, seasonal_forecast  # noqa: E402
from graphcore.tasks.traffic.metrics import MaskedHorizonErrors  # noqa: E402
from graphcore.tasks.traffic.report import markdown_table  # noqa: E402

STEPS = [  # (label, fit_seasonal_prior arguments)
    ("all-days mean profile, least-squares φ per sensor",
     dict(n_types=1, smoothing=1, statistic="mean", robust=False, clip=False)),
    ("+ weekday / weekend profiles", dict(n_types=2, smoothing=1, statistic="mean", robust=False, clip=False)),
    ("+ pooled over neighbouring slots (width on validation)",
     dict(n_types=2, smoothing=None, statistic="mean", robust=False, clip=False)),
    ("+ median instead of mean", dict(n_types=2, smoothing=None, statistic="median", robust=False, clip=False)),
    ("+ φ fitted for absolute error (IRLS)", dict(n_types=2, smoothing=None, statistic="median", robust=True, clip=False)),
    ("+ clipped to the training range (the task's prior)", dict()),
]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(LOS_LOOP), help="traffic .npz (default: bundled Los-loop)")
    parser.add_argument("--out", default=str(ROOT / "results" / "traffic_prior.json"))
    args = parser.parse_args(argv)
    series = load_traffic(args.data)
    split = split_windows(series.num_steps, 12, 24)
    rows, results = [], []
    for label, settings in STEPS:
        prior = fit_seasonal_prior(series, split, **settings)
        result = {"step": label, "settings": settings, "smoothing": prior.smoothing}
        for stage in ("val", "test"):
            errors = MaskedHorizonErrors(split.horizon, series.missing_value)
            errors.update(torch.from_numpy(seasonal_forecast(series, split, stage, prior)),
                          torch.from_numpy(series.speed[split.target_steps(stage)]))
            result[stage] = {"mae_60min": errors.summary(12, 12)["mae"], "mae_avg": errors.summary(1, 24)["mae"]}
        results.append(result)
        rows.append([label, prior.smoothing, *(f"{result[s][k]:.3f}" for s in ("val", "test") for k in ("mae_60min", "mae_avg"))])
    print(markdown_table(["prior", "width (slots)", "val MAE 60 min", "val MAE avg", "test MAE 60 min", "test MAE avg"], rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(out)
    return results


if __name__ == "__main__":
    main()
