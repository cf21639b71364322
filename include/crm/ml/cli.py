"""``crm ml``: train the churn model on a labelled extract, judge it out of time, register it;
score a day with the champion (``crm ml score --date D``).

Cheap to import (``crm`` lists it on every start): typer and the standard library only;
pandas, scikit-learn, skops, plotly and psycopg are imported when a command runs.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from crm.dates import parse_day

HELP = (
    "Churn model: train on a labelled CSV, judge it out of time, save, report and register it; score a day."
)

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)
train_app = typer.Typer(help="Train a model and write its artifact and report.", no_args_is_help=True)
app.add_typer(train_app, name="train")


@app.callback()
def _ml() -> None:
    """Churn model: train on a labelled CSV, judge it out of time, save, report and register it; score a day."""


@train_app.callback()
def _train() -> None:
    """Train a model and write its artifact and report."""


def _warehouse() -> tuple[bool, str]:
    """(available, why): WAREHOUSE_URL set, or the embedded warehouse running."""
    from crm.settings import get_settings

    settings = get_settings()
    if settings.warehouse_url:
        return True, "WAREHOUSE_URL"
    from crm.warehouse import EmbeddedWarehouse

    server = EmbeddedWarehouse(settings)
    if server.initialised() and server.status().running:
        return True, "the embedded warehouse"
    return False, "no WAREHOUSE_URL and no running embedded warehouse"


def _register(result, artifact, version: str, name: str, frame) -> str:
    """Register the version as crm_ml (migrating the warehouse first if 0007 is missing),
    with its training sample's profile, the reference daily scoring measures drift against."""
    from crm.ml.drift import reference_from_training, store_reference
    from crm.ml.registry import register_churn
    from crm.warehouse import connect, ensure_ready

    with connect("crm_ml", autocommit=True) as conn:
        exists = conn.execute("select to_regclass('ml.model_versions')").fetchone()[0]
    if exists is None:
        ensure_ready()
    with connect("crm_ml") as conn:
        decision = register_churn(conn, result, artifact, version, name=name)
        store_reference(conn, name, version, reference_from_training(result, frame))
        conn.commit()
        return str(decision)


def _warehouse_frame(label, id_column, time_column, gap_periods, baseline):
    """The warehouse's training frame and its columns (crm.ml.training_data); the options
    given override its defaults (the baseline: recency and the 30-day TRB ratio). Exits 2
    when no warehouse or no labelled snapshot."""
    from crm.ml.training_data import horizon_gap_periods, read_training_frame

    available, why = _warehouse()
    if not available:
        typer.echo(f"cannot train from the warehouse: {why} (or give --csv)", err=True)
        raise typer.Exit(2)
    data = read_training_frame()
    if data.frame.empty:
        typer.echo("cannot train: no labelled snapshot in the warehouse (crm history builds one)", err=True)
        raise typer.Exit(2)
    typer.echo(f"training data from the warehouse: {data.describe()}")
    return (
        data.frame,
        label or data.label,
        id_column or data.id_column,
        time_column or data.time_column,
        horizon_gap_periods() if gap_periods is None else gap_periods,
        baseline or list(data.baseline_columns),
    )


@train_app.command("churn")
def churn_cmd(
    csv: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            exists=True,
            dir_okay=False,
            help="Labelled extract: one row per customer (and period). Default: the warehouse's"
            " features and labels (marts.ml_features_customer_monthly, marts.ml_churn_labels).",
        ),
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", help="0/1 churn label column (1 = churned); needed with --csv.")
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id", help="Customer id column (never a feature).")
    ] = None,
    time_column: Annotated[
        str | None,
        typer.Option("--time", help="Period column: the latest periods are the out-of-time test set."),
    ] = None,
    name: Annotated[
        str, typer.Option(help="Model name in the registry and under $CRM_HOME/models.")
    ] = "churn",
    baseline: Annotated[
        list[str] | None, typer.Option(help="Baseline column (at most two; default the two most predictive).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Column that must not be a feature (repeatable).")
    ] = None,
    test_periods: Annotated[
        int | None, typer.Option(help="Latest periods in the test set (default: enough for 20% of rows).")
    ] = None,
    gap_periods: Annotated[
        int | None,
        typer.Option(
            help="Periods left out between training and test (default: 0 with --csv; from the warehouse,"
            " the months the label horizon spans)."
        ),
    ] = None,
    calibration: Annotated[str, typer.Option(help="auto, isotonic or sigmoid.")] = "auto",
    max_iter: Annotated[int, typer.Option(help="Boosting iterations per tree ensemble.")] = 200,
    sep: Annotated[str, typer.Option(help="CSV delimiter.")] = ",",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Annotated[int, typer.Option(help="OpenMP threads of the trees (0 = all cores).")] = 1,
    register: Annotated[
        bool, typer.Option(help="Register the version when a warehouse is available.")
    ] = True,
) -> None:
    """Train the churn model on the warehouse's labelled snapshots (or a labelled CSV); write
    its artifact and HTML report; register it.

    Without --csv the frame is every customer-month whose label horizon has elapsed
    (crm.ml.training_data, read as crm_ml), split out of time by month with a gap of the
    horizon's months. Prints the test metrics of the model beside the baseline's. With a warehouse (WAREHOUSE_URL,
    or the embedded one running) the version goes to ml.model_versions and the promotion rule
    decides whether it becomes champion; without one it is trained and reported only.
    """
    import datetime as dt

    from crm.ml.churn import read_csv, train
    from crm.ml.model_report import write_report
    from crm.ml.registry import artifact_path, new_version, save_artifact

    if baseline and len(baseline) > 2:
        raise typer.BadParameter("at most two baseline columns", param_hint="'--baseline'")
    if csv is not None:
        if label is None:
            raise typer.BadParameter("--csv needs --label", param_hint="'--label'")
        frame = read_csv(csv, time_column, sep=sep)
        gap_periods = gap_periods or 0
    else:
        frame, label, id_column, time_column, gap_periods, baseline = _warehouse_frame(
            label, id_column, time_column, gap_periods, baseline
        )
    try:
        result = train(
            frame,
            label,
            id_column,
            time_column,
            baseline_columns=baseline,
            exclude=exclude or (),
            test_periods=test_periods,
            gap_periods=gap_periods,
            calibration=calibration,
            random_state=seed,
            max_iter=max_iter,
            n_threads=threads or None,
        )
    except (KeyError, ValueError) as exc:
        typer.echo(f"cannot train: {exc.args[0] if exc.args else exc}", err=True)
        raise typer.Exit(2) from None
    trained_at = dt.datetime.now(dt.UTC)
    version = new_version(trained_at)
    suffix = 1
    while artifact_path(name, version).exists():
        suffix += 1
        version = f"{new_version(trained_at)}-{suffix}"
    artifact = save_artifact(result.model, name, version)

    w = result.split.window()
    if w["split"] == "out-of-time":
        typer.echo(
            f"out-of-time test: trained on {w['train'][0]}..{w['train'][1]} ({w['train_rows']:,} rows), "
            f"tested on {w['test'][0]}..{w['test'][1]} ({w['test_rows']:,} rows)"
        )
    else:
        typer.echo(
            f"no time column: stratified holdout ({w['train_rows']:,} train / {w['test_rows']:,} test rows);"
            " in-time only"
        )
    typer.echo(f"{'metric':<20}{'model':>10}{'baseline':>10}")
    for key in ("roc_auc", "pr_auc", "brier", "top_decile_lift", "top_decile_capture", "ece"):
        typer.echo(f"{key:<20}{result.metrics[key]:>10.4f}{result.baseline_metrics[key]:>10.4f}")
    typer.echo(
        f"baseline: logistic regression on {', '.join(result.baseline_columns)}; "
        f"model: {result.calibration_method}-calibrated HistGradientBoosting, {result.best_params}"
    )
    typer.echo(f"artifact {artifact.path} (sha256 {artifact.sha256[:12]}…)")

    failed = False
    available, why = _warehouse()
    if not register:
        registry = "not registered (--no-register)"
    elif not available:
        registry = f"not registered: {why}"
    else:
        try:
            registry = f"registered in ml.model_versions via {why}: {_register(result, artifact, version, name, frame)}"
        except Exception as exc:  # the artifact and report stay; say why the row is missing
            registry = f"NOT registered ({why}): {type(exc).__name__}: {exc}"
            failed = True
    path = write_report(result, name, version, registry=registry, n_threads=threads or None)
    typer.echo(registry)
    typer.echo(f"report {path}")
    raise typer.Exit(1 if failed else 0)


@app.command("score")
def score_cmd(
    date: Annotated[
        dt.date,
        typer.Option("--date", parser=parse_day, metavar="YYYY-MM-DD", help="As-of day of the scores."),
    ],
    name: Annotated[str, typer.Option(help="Model name in the registry.")] = "churn",
    chunk: Annotated[int, typer.Option(min=1, help="Rows fetched, scored and written at a time.")] = 50_000,
    threads: Annotated[int, typer.Option(help="OpenMP threads of the trees (0 = all cores).")] = 1,
) -> None:
    """Score the latest feature snapshot on or before --date with the champion into ml.churn_scores
    (with reason codes) and the lifetime value of the scored customers into ml.clv_scores.

    Idempotent: re-scoring a day replaces that day's scores of the same model version.
    Without a champion nothing is written and it exits 0.
    """
    from crm.ml.clv import score_clv
    from crm.ml.scoring import NoFeaturesError, score_churn
    from crm.project_vars import dbt_vars

    try:
        result = score_churn(
            date,
            chunk=chunk,
            name=name,
            n_threads=threads or None,
            reasons_min_probability=dbt_vars()["churn_reasons_min_probability"],
        )
    except NoFeaturesError as exc:
        typer.echo(f"cannot score: {exc}", err=True)
        raise typer.Exit(1) from None
    if not result.scored:
        typer.echo(f"{date}: {result.message}")
        return
    clv = score_clv(date, result.model_version)
    typer.echo(
        f"{date}: {result.rows:,} rows scored with {result.model_name} {result.model_version}"
        f" (features of {result.snapshot_date}) in {result.seconds:.1f} s; lifetime value of"
        f" {clv.rows:,} customers ({clv.model_version})"
    )


@app.command("backtest")
def backtest_cmd(
    cohort: Annotated[
        dt.date,
        typer.Option(
            "--cohort", parser=parse_day, metavar="YYYY-MM-DD", help="Cohort date: a month-end snapshot."
        ),
    ],
    months: Annotated[int, typer.Option("--months", min=1, help="Months of realised margin after it.")] = 12,
    name: Annotated[str, typer.Option(help="Churn model name in the registry.")] = "churn",
) -> None:
    """Backtest the lifetime-value estimates on the cohort at --cohort: each estimate from data up
    to that day only, against the margin realised over the --months after it (crm.ml.backtest).

    Prints Spearman, Gini of value captured and the decile calibration of the margin x survival
    CLV, the BG/NBD + Gamma-Gamma CLV and the naive last-3-months baseline; writes a JSON and an
    HTML report under $CRM_HOME/reports. Read as crm_ml.
    """
    from crm.ml.backtest import format_table, run_backtest, write_report
    from crm.settings import get_settings
    from crm.warehouse import connect

    available, why = _warehouse()
    if not available:
        typer.echo(f"cannot backtest: {why}", err=True)
        raise typer.Exit(2)
    try:
        with connect("crm_ml") as conn:
            result = run_backtest(conn, cohort, months, name=name)
    except ValueError as exc:
        typer.echo(f"cannot backtest: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"cohort {cohort}: {len(result.frame):,} customers, {months} months; churn: {result.churn_source}"
    )
    typer.echo(format_table(result))
    for note in result.notes:
        typer.echo(f"note: {note}")
    json_path, html_path = write_report(result, get_settings().home / "reports")
    typer.echo(f"report {json_path} and {html_path}")
