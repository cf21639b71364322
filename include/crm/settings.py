"""The one settings object: every configurable value, read from the environment.

No other module reads ``os.environ`` for configuration. The README's
configuration table lists these variables.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]

ROLES = ("crm_loader", "crm_transformer", "crm_ml", "crm_bi_reader")
# The warehouse's superuser (the embedded cluster's bootstrap role, docker-compose's POSTGRES_USER):
# it creates the owner and the database, nothing else. The owner, crm_owner, is no superuser.
ADMIN = "crm_admin"

# The pseudonym key (CRM_PII_SALT, the HMAC key of dim_customer's pseudonyms): a guessable
# key lets anyone who reads the marts recompute pseudonyms of candidate ids and reverse them.
PII_SALT_MIN_LENGTH = 32
PII_SALT_MIN_DISTINCT = 10
PII_SALT_MIN_ENTROPY_BITS = 3.0  # Shannon entropy per character; token_urlsafe(32) has ~4.6
# Values of .env.example and their usual cousins, compared without case and punctuation.
PLACEHOLDERS = frozenset({"changeme", "changeit", "replaceme", "placeholder", "password", "secret"})


class InsecureSecret(ValueError):
    """A secret from the environment is a placeholder or too weak; the message names the
    variable, never the value."""


def is_placeholder(value: str) -> bool:
    letters = re.sub(r"[^a-z]", "", value.lower())
    return letters in PLACEHOLDERS or "changeme" in letters


def check_secret(variable: str, value: str) -> str:
    """``value`` unless it is a placeholder such as ``change-me`` (then :class:`InsecureSecret`)."""
    if is_placeholder(value):
        raise InsecureSecret(
            f"{variable} is a placeholder (as in .env.example): set a real secret, e.g. "
            'python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    return value


def shannon_bits(value: str) -> float:
    """Shannon entropy per character of ``value`` (0 for one repeated character)."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values()) if value else 0.0


def check_pii_salt(value: str) -> str:
    """The pseudonym key unless it is a placeholder, short or of low entropy (few distinct
    characters, a repeated pattern). The message names CRM_PII_SALT, never the value."""
    check_secret("CRM_PII_SALT", value)
    hint = 'e.g. python -c "import secrets; print(secrets.token_urlsafe(32))"'
    if len(value) < PII_SALT_MIN_LENGTH:
        raise InsecureSecret(f"CRM_PII_SALT must be at least {PII_SALT_MIN_LENGTH} random characters: {hint}")
    if len(set(value)) < PII_SALT_MIN_DISTINCT or shannon_bits(value) < PII_SALT_MIN_ENTROPY_BITS:
        raise InsecureSecret(
            f"CRM_PII_SALT has too little entropy (at least {PII_SALT_MIN_DISTINCT} distinct characters and"
            f" {PII_SALT_MIN_ENTROPY_BITS} bits per character): use random characters, {hint}"
        )
    return value


def private_dir(path: Path) -> Path:
    """``path`` as a folder; each folder created on the way (the missing parents too) is
    owner-only (0700). Existing folders keep their mode."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # another process made it meanwhile
            continue
        folder.chmod(0o700)  # mkdir's mode passes through the umask
    return missing[0] if missing else path


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
    warehouse_address: str | None = Field(
        default=None,
        description="The warehouse's URL without credentials: what Airflow is given instead of WAREHOUSE_URL"
        " (it connects as the stage roles only; no owner URL).",
    )
    owner_password: str | None = Field(default=None, description="Embedded warehouse owner password.")
    admin_password: str | None = Field(
        default=None,
        description="Password of crm_admin, the warehouse superuser that creates crm_owner (crm migrate only).",
    )
    pii_salt: str | None = Field(
        default=None, description="Key of the HMAC pseudonyms in the marts (32+ random characters)."
    )
    pg_sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = Field(
        default=None, description="libpq sslmode added to every warehouse URL the platform builds."
    )
    retain_landing_days: int = Field(
        default=90, gt=0, description="Days a landing day folder is kept, back from the business day run."
    )
    retain_raw_days: int = Field(
        default=2557,
        gt=0,
        description="Days a raw day partition is kept (7 years); at least the marts' longest look-back.",
    )
    retain_quarantine_days: int = Field(default=90, gt=0, description="Days quarantined rows are kept.")
    retain_log_days: int = Field(default=30, gt=0, description="Days files in <CRM_HOME>/logs are kept.")
    retain_raw_keep_feeds: str = Field(
        default="core_customers,core_accounts",
        description="Comma list of raw feeds never dropped by day (CDC: their current state is the latest delta).",
    )
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
        A placeholder from ``.env.example`` (``change-me``) or a weak PII salt is refused
        (:class:`InsecureSecret`, naming the variable).
        """
        field = {
            "crm_admin": "admin_password",
            "crm_owner": "owner_password",
            "crm_loader": "loader_password",
            "crm_transformer": "transformer_password",
            "crm_ml": "ml_password",
            "crm_bi_reader": "bi_reader_password",
            "crm_pii_salt": "pii_salt",
        }[role]
        value = getattr(self, field)
        if value:
            if role == "crm_pii_salt":
                return check_pii_salt(value)
            return check_secret(f"CRM_{field.upper()}", value)
        path = self.home / "secrets.json"
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        # A generated pseudonym key from before the 32-character minimum is replaced (every
        # pseudonym of this local warehouse changes on its next build; docs/security.md).
        weak_key = role == "crm_pii_salt" and len(stored.get(role, "")) < PII_SALT_MIN_LENGTH
        if role not in stored or weak_key:
            stored[role] = secrets.token_urlsafe(32 if role == "crm_pii_salt" else 18)
            private_dir(path.parent)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(stored, fh, indent=2)
        return stored[role]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


@contextmanager
def environment(overrides: dict[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``overrides`` (None: unset) for the block, restored afterwards;
    :func:`get_settings` re-reads it on entry and on exit. For code that hands settings to
    child processes through the environment (dbt, ``airflow dags test``) and benchmarks."""
    saved = {key: os.environ.get(key) for key in overrides}

    def apply(values: dict[str, str | None]) -> None:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()

    apply(overrides)
    try:
        yield
    finally:
        apply(saved)
