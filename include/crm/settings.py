"""The one settings object: every configurable value, read from the environment.

No other module reads ``os.environ`` for configuration. The README's
configuration table lists these variables.
"""

from __future__ import annotations

import json
import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]

ROLES = ("crm_loader", "crm_transformer", "crm_ml", "crm_bi_reader")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    warehouse_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("WAREHOUSE_URL", "CRM_WAREHOUSE_URL"),
        description="PostgreSQL URL of an external warehouse (owner role). Unset: the embedded one.",
    )
    home: Path = Field(default=REPO_ROOT / "var", description="Local state: pgdata, landing, airflow, logs.")
    pg_port: int = Field(default=54329, description="TCP port of the embedded warehouse on 127.0.0.1.")
    pg_database: str = Field(default="crm", description="Database name of the embedded warehouse.")
    landing_dir: Path | None = Field(
        default=None, description="Where channel files land (default var/landing)."
    )
    truth_dir: Path | None = Field(default=None, description="Sample-bank ground truth (default var/truth).")
    dbt_target_dir: Path | None = Field(
        default=None,
        description="dbt's target folder: manifest, compiled SQL, partial parse (default dbt_project/target).",
    )
    reporting_currency: str = Field(default="HKD", description="Currency TRB and marts are reported in.")
    sensor_timeout_seconds: int | None = Field(
        default=None,
        description="Override every feed's file-sensor timeout (0 = check once; local runs and tests).",
    )
    alert_channels: str = Field(
        default="log", description="Comma list of alert channels: log, smtp, webhook."
    )
    alert_email: str | None = Field(default=None, description="Recipient of e-mail alerts (smtp channel).")
    alert_webhook_url: str | None = Field(
        default=None, description="URL that receives JSON alerts (webhook)."
    )
    owner_password: str | None = Field(default=None, description="Embedded warehouse owner password.")
    pii_salt: str | None = Field(default=None, description="Salt of PII hashes in the marts.")
    loader_password: str | None = None
    transformer_password: str | None = None
    ml_password: str | None = None
    bi_reader_password: str | None = None

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def landing(self) -> Path:
        return self.landing_dir or self.home / "landing"

    @property
    def truth(self) -> Path:
        return self.truth_dir or self.home / "truth"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def dbt_project_dir(self) -> Path:
        return REPO_ROOT / "dbt_project"

    @property
    def dbt_target(self) -> Path:
        """Where dbt writes its artifacts; two processes that run dbt at once need one each."""
        return self.dbt_target_dir or self.dbt_project_dir / "target"

    @property
    def expectations_dir(self) -> Path:
        return REPO_ROOT / "expectations"

    @property
    def embedded(self) -> bool:
        return self.warehouse_url is None

    def role_password(self, role: str) -> str:
        """Password of a warehouse role: from the environment, else a generated local secret.

        Generated secrets live in ``var/secrets.json`` (mode 0600, git-ignored), so a
        fresh clone never carries a password and the embedded warehouse still has one.
        """
        field = {
            "crm_owner": "owner_password",
            "crm_loader": "loader_password",
            "crm_transformer": "transformer_password",
            "crm_ml": "ml_password",
            "crm_bi_reader": "bi_reader_password",
            "crm_pii_salt": "pii_salt",
        }[role]
        value = getattr(self, field)
        if value:
            return value
        path = self.home / "secrets.json"
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        if role not in stored:
            stored[role] = secrets.token_urlsafe(18)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(stored, fh, indent=2)
        return stored[role]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
