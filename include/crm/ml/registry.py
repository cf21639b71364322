"""Model artifacts on disk (skops, hashed) and their registry rows (``ml.model_versions``).

Artifacts: ``$CRM_HOME/models/<name>/<version>.skops``, written with ``skops.io`` (never
pickle: loading a pickle runs whatever code it names). Each file's SHA-256 goes into the
registry; :func:`load_artifact` recomputes it before reading a byte of the model and raises
:class:`ArtifactIntegrityError` on a mismatch, then loads with an explicit trust list: skops
reports the types it does not trust by default, and only scikit-learn and numpy types are
accepted (:data:`TRUSTED_PREFIXES`); anything else raises :class:`UntrustedArtifactError`.

Promotion: a new version is inserted as *challenger*; it becomes *champion* only if its PR AUC
(average precision: churners are rare and the retention team works the top of the list)
beats the champion's PR AUC **on the new version's out-of-time test set**, the champion being
re-scored from its artifact on those very rows (metrics stored with each version come from
different test sets and are not comparable). The replaced champion is *retired*. A champion
that cannot score the rows (a column it needs is missing) keeps its place.

Model-risk floor, checked last: a version whose PR AUC does not beat its own baseline's
(``metrics["baseline"]``: the one-line logistic regression on recency and the 30-day TRB
ratio, fitted and tested on the very same split) never becomes champion, the first version
included. A boosted model that a two-column regression beats has learnt noise; scoring with
it would rank customers worse than the rule an analyst would write, so it stays challenger
and the daily run keeps the current champion (or, with none, scores nothing).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PROMOTION_METRIC",
    "TRUSTED_PREFIXES",
    "Artifact",
    "ArtifactIntegrityError",
    "Promotion",
    "UntrustedArtifactError",
    "artifact_path",
    "champion",
    "load_artifact",
    "new_version",
    "register_churn",
    "register_version",
    "save_artifact",
    "sha256_of",
]

PROMOTION_METRIC = "pr_auc"
TRUSTED_PREFIXES = ("sklearn.", "numpy.")


class ArtifactIntegrityError(RuntimeError):
    """The artifact on disk is not the one registered (its SHA-256 differs)."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        self.path, self.expected, self.actual = Path(path), expected, actual
        super().__init__(
            f"refusing to load {path}: SHA-256 {actual[:12]}… does not match the registered "
            f"{expected[:12]}… (the file was modified or replaced)"
        )


class UntrustedArtifactError(RuntimeError):
    """The artifact holds types outside scikit-learn and numpy."""

    def __init__(self, path: Path, types: list[str]) -> None:
        self.path, self.types = Path(path), types
        super().__init__(f"refusing to load {path}: untrusted types {', '.join(types)}")


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str


@dataclass(frozen=True)
class Promotion:
    """What registering a version decided."""

    name: str
    version: str
    status: str  # champion or challenger
    reason: str
    metric: str = PROMOTION_METRIC
    score: float | None = None  # the new version's metric on its test set
    champion_version: str | None = None  # the champion it was compared with
    champion_score: float | None = None  # that champion's metric on the same rows

    def __str__(self) -> str:
        return f"{self.name} {self.version}: {self.status} ({self.reason})"


def _home(home: Path | None) -> Path:
    if home is not None:
        return Path(home)
    from crm.settings import get_settings

    return get_settings().home


def artifact_path(name: str, version: str, home: Path | None = None) -> Path:
    return _home(home) / "models" / name / f"{version}.skops"


def new_version(now: dt.datetime | None = None) -> str:
    """A sortable version id: the UTC time of training, e.g. ``20261130T054412Z``."""
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return f"{now:%Y%m%dT%H%M%S}Z"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_artifact(model: Any, name: str, version: str, home: Path | None = None) -> Artifact:
    """Write ``model`` with skops to its place; never overwrites a version."""
    import skops.io as sio

    path = artifact_path(name, version, home)
    if path.exists():
        raise FileExistsError(f"{path} exists: a version is written once")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".skops.tmp")
    sio.dump(model, tmp)
    tmp.rename(path)
    return Artifact(path, sha256_of(path))


def load_artifact(path: Path | str, expected_sha256: str) -> Any:
    """The model in ``path``, after checking its SHA-256 and that it holds only trusted types."""
    import skops.io as sio

    path = Path(path)
    actual = sha256_of(path)
    if actual != expected_sha256.lower():
        raise ArtifactIntegrityError(path, expected_sha256.lower(), actual)
    untrusted = sio.get_untrusted_types(file=path)
    refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if refused:
        raise UntrustedArtifactError(path, refused)
    return sio.load(path, trusted=untrusted)


def _json(value: Any) -> str:
    """JSON for jsonb: NaN/inf become null (PostgreSQL's jsonb has no NaN), numpy scalars plain."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        if hasattr(v, "item") and not isinstance(v, str | bytes):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    return json.dumps(clean(value), default=str)


def champion(conn, name: str) -> dict[str, Any] | None:
    """The champion row of model ``name`` (a dict), or None."""
    cur = conn.execute(
        "select version, artifact_path, artifact_sha256, training_window, metrics, features"
        " from ml.model_versions where name = %s and status = 'champion'",
        (name,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    keys = ("version", "artifact_path", "artifact_sha256", "training_window", "metrics", "features")
    return dict(zip(keys, row, strict=True))


def _order(value: Any) -> Any:
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value))


def _overlap_note(champ_window: dict[str, Any], window: dict[str, Any]) -> str:
    """A note when the champion trained on part of the new test periods (its score is optimistic)."""
    train, test = (champ_window or {}).get("train"), (window or {}).get("test")
    if train and test and _order(train[1]) >= _order(test[0]):
        return f"; the champion trained on periods up to {train[1]}, inside this test window (optimistic)"
    return ""


def register_version(
    conn,
    *,
    name: str,
    version: str,
    trained_at: dt.datetime,
    training_window: dict[str, Any],
    features: dict[str, Any],
    parameters: dict[str, Any],
    metrics: dict[str, Any],
    artifact: Artifact,
    test_frame,
    y_test,
    min_improvement: float = 0.0,
) -> Promotion:
    """Insert a version as challenger and apply the promotion rule, in one transaction.

    ``metrics[PROMOTION_METRIC]`` is the new version's score on (``test_frame``, ``y_test``);
    the champion is re-scored on the same rows. ``conn``: a psycopg connection as ``crm_ml``.
    """
    from sklearn.metrics import average_precision_score

    model_metrics = metrics.get("model", metrics)
    score = model_metrics.get(PROMOTION_METRIC)
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('ml.model_versions:' || %s))", (name,))
        conn.execute(
            "insert into ml.model_versions (name, version, trained_at, training_window, features,"
            " parameters, metrics, artifact_path, artifact_sha256, status)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'challenger')",
            (
                name,
                version,
                trained_at,
                _json(training_window),
                _json(features),
                _json(parameters),
                _json(metrics),
                str(artifact.path),
                artifact.sha256,
            ),
        )
        champ = champion(conn, name)
        if champ is None:
            decision = Promotion(name, version, "champion", "first version: no champion yet", score=score)
        elif score is None or (isinstance(score, float) and math.isnan(score)):
            decision = Promotion(
                name,
                version,
                "challenger",
                f"no {PROMOTION_METRIC} on its test set",
                score=score,
                champion_version=champ["version"],
            )
        else:
            decision = _compare(
                name,
                version,
                score,
                champ,
                training_window,
                test_frame,
                y_test,
                min_improvement,
                average_precision_score,
            )
        below = _below_baseline(metrics, score)
        if decision.status == "champion" and below:
            decision = dataclasses.replace(decision, status="challenger", reason=below)
        if decision.status == "champion":
            if champ is not None:
                conn.execute(
                    "update ml.model_versions set status = 'retired', status_changed_at = clock_timestamp(),"
                    " status_reason = %s where name = %s and version = %s",
                    (f"replaced by {version}: {decision.reason}", name, champ["version"]),
                )
            conn.execute(
                "update ml.model_versions set status = 'champion', status_changed_at = clock_timestamp(),"
                " status_reason = %s where name = %s and version = %s",
                (decision.reason, name, version),
            )
        else:
            conn.execute(
                "update ml.model_versions set status_reason = %s where name = %s and version = %s",
                (decision.reason, name, version),
            )
    return decision


def _below_baseline(metrics: dict[str, Any], score: Any) -> str | None:
    """Why the version may not be champion next to its own baseline, or None."""
    floor = (metrics.get("baseline") or {}).get(PROMOTION_METRIC)
    if floor is None or score is None or math.isnan(floor) or math.isnan(score) or score > floor:
        return None
    return (
        f"PR AUC {score:.4f} does not beat its baseline's {floor:.4f} (logistic regression on recency"
        " and the 30-day TRB ratio, same out-of-time test set): stays challenger"
    )


def _compare(
    name, version, score, champ, window, test_frame, y_test, min_improvement, metric_fn
) -> Promotion:
    kw = {"score": score, "champion_version": champ["version"]}
    needed = [*champ["features"].get("numeric", []), *champ["features"].get("categorical", [])]
    missing = [c for c in needed if c not in test_frame.columns]
    if missing:
        return Promotion(
            name,
            version,
            "challenger",
            f"champion {champ['version']} cannot score this test set (missing {', '.join(missing)}):"
            " it keeps its place; promote by hand after a comparison",
            **kw,
        )
    try:
        model = load_artifact(champ["artifact_path"], champ["artifact_sha256"])
    except (ArtifactIntegrityError, UntrustedArtifactError, FileNotFoundError) as exc:
        return Promotion(
            name,
            version,
            "challenger",
            f"the champion's artifact could not be loaded ({exc}): investigate",
            **kw,
        )
    champ_score = float(metric_fn(y_test, model.predict_proba(test_frame[needed])[:, 1]))
    kw["champion_score"] = champ_score
    note = _overlap_note(champ["training_window"], window)
    if score > champ_score + min_improvement:
        return Promotion(
            name,
            version,
            "champion",
            f"PR AUC {score:.4f} beats champion {champ['version']}'s {champ_score:.4f} on the same "
            f"out-of-time test set{note}",
            **kw,
        )
    return Promotion(
        name,
        version,
        "challenger",
        f"PR AUC {score:.4f} does not beat champion {champ['version']}'s {champ_score:.4f} on the same "
        f"test set: stays challenger{note}",
        **kw,
    )


def register_churn(
    conn,
    result,
    artifact: Artifact,
    version: str,
    *,
    name: str = "churn",
    trained_at: dt.datetime | None = None,
    min_improvement: float = 0.0,
) -> Promotion:
    """Register a :class:`crm.ml.churn.ChurnResult` whose model was saved as ``artifact``."""
    return register_version(
        conn,
        name=name,
        version=version,
        trained_at=trained_at or dt.datetime.now(dt.UTC),
        training_window={**result.split.window(), "time_column": result.time_column},
        features=result.features(),
        parameters=result.parameters(),
        metrics={"model": result.metrics, "baseline": result.baseline_metrics},
        artifact=artifact,
        test_frame=result.test_frame,
        y_test=result.y_test,
        min_improvement=min_improvement,
    )
