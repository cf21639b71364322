"""``make bench``'s ml section: the churn model's training time, scoring throughput and peak
memory at bank scale (1,000,000 customers by default).

No generated bank of a million customers with a year of history fits this machine's
session (2,000 customers x 400 days take ~8 minutes to load and build), so the bench
takes the warehouse's real training frame (``marts.ml_features_customer_monthly`` with its
labels) and **replicates** it to the wanted size: each copy gets new customer ids and
numeric features multiplied by a small random factor (so trees do not see exact
duplicates). The months, label rate and column types stay those of the warehouse. That
measures what scale costs (fit, calibration, search, predict, reason codes); it says
nothing about accuracy, which ``crm ml train`` reports on the real frame.

Each size runs in a process of its own, so the peak resident memory (``VmHWM``) is that
size's alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

JITTER = 0.05  # numeric features x U(1 - JITTER, 1 + JITTER) in each copy


def replicate(frame, rows: int, id_column: str, seed: int = 0):
    """``frame`` repeated (with new ids and jittered numbers) to exactly ``rows`` rows."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    copies = -(-rows // len(frame))
    parts = []
    numeric = [c for c in frame.select_dtypes("number").columns if c not in (id_column, "churned")]
    for k in range(copies):
        part = frame.copy()
        part[id_column] = part[id_column].astype(str) + f"~{k}"
        if k:
            part[numeric] = part[numeric] * rng.uniform(
                1 - JITTER, 1 + JITTER, size=(len(part), len(numeric))
            )
        parts.append(part)
    return pd.concat(parts, ignore_index=True).iloc[:rows]


def measure(rows: int, frame_path: Path) -> dict[str, Any]:
    """Train on ``rows`` replicated rows, then score ``rows`` rows and explain those the
    daily scoring explains; seconds, rows per second and peak memory of this process."""
    import numpy as np
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from crm.memory import peak_rss_mib
    from crm.ml.churn import train
    from crm.ml.explain import ReasonExplainer
    from crm.ml.training_data import ID_COLUMN, LABEL_COLUMN, TIME_COLUMN
    from crm.project_vars import dbt_vars

    base = pd.read_pickle(frame_path)
    frame = replicate(base, rows, ID_COLUMN)
    clock = time.perf_counter()
    result = train(frame, LABEL_COLUMN, ID_COLUMN, TIME_COLUMN, test_periods=1, gap_periods=3)
    train_s = time.perf_counter() - clock
    features = result.columns.features
    scoring = frame[features]
    limits = threadpool_limits(limits=1, user_api="openmp")  # as crm ml score runs (scoring.py)
    clock = time.perf_counter()
    p = result.model.predict_proba(scoring)[:, 1]
    predict_s = time.perf_counter() - clock
    threshold = float(dbt_vars()["churn_reasons_min_probability"])
    chosen = np.flatnonzero(p >= threshold)
    explainer = ReasonExplainer(result.model, result.columns.numeric, result.columns.categorical)
    sample = chosen[:5000]  # exact Tree SHAP costs the same per row: a sample gives the rate
    clock = time.perf_counter()
    explainer.reasons(scoring.iloc[sample])
    explain_s = time.perf_counter() - clock
    limits.restore_original_limits()
    per_row = explain_s / max(len(sample), 1)
    return {
        "rows": rows,
        "train_rows": int(result.split.train_index.size),
        "test_rows": int(result.split.test_index.size),
        "train_s": round(train_s, 1),
        "predict_s": round(predict_s, 2),
        "predict_rows_per_s": round(rows / predict_s) if predict_s else None,
        "explained_share": round(len(chosen) / rows, 4),
        "explain_ms_per_row": round(per_row * 1000, 2),
        "explain_s_estimated_all": round(per_row * len(chosen), 1),
        "roc_auc_replicated": round(float(result.metrics.get("roc_auc", float("nan"))), 3),
        "peak_rss_mib": round(peak_rss_mib()),
    }


def bench_ml(work: Path, sizes: tuple[int, ...] = (100_000, 1_000_000)) -> dict[str, Any]:
    """Each size in a fresh process; the warehouse's training frame is read once."""
    from crm.ml.training_data import read_training_frame

    work.mkdir(parents=True, exist_ok=True)
    data = read_training_frame()
    if data.frame.empty:
        raise RuntimeError("no labelled customer-month in the warehouse: make run or crm history first")
    path = work / "ml_frame.pkl"
    data.frame.to_pickle(path)
    out: dict[str, Any] = {
        "source_rows": len(data.frame),
        "source_churn_rate": round(float(data.frame["churned"].mean()), 4),
    }
    for rows in sizes:
        code = (
            "import json, sys; from pathlib import Path; from crm.ml.bench import measure; "
            f"print(json.dumps(measure({rows}, Path(sys.argv[1]))))"
        )
        proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
        if proc.returncode:
            out[str(rows)] = {"error": proc.stderr.strip().splitlines()[-1:]}
            continue
        out[str(rows)] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"ml {rows:,} rows: {out[str(rows)]}", flush=True)
    return out
