"""Typed access to ``registry.yml``, the single description of every feed."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

REGISTRY_PATH = Path(__file__).with_name("registry.yml")

ColumnType = Literal["text", "int", "bigint", "numeric", "date", "timestamp", "timestamptz", "boolean"]

# PostgreSQL type of each registry type in the raw tables.
PG_TYPES: dict[str, str] = {
    "text": "text",
    "int": "integer",
    "bigint": "bigint",
    "numeric": "numeric",
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "boolean": "boolean",
}


class Column(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: ColumnType = "text"
    required: bool = False
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    not_future: bool = False
    accepted: tuple[str, ...] | None = None
    references: str | None = None  # "<feed>.<column>"
    # Indexed in raw: other feeds' reference checks look values up here. Worth it for a
    # key many small files refer to; an index costs every load of this feed a build.
    index: bool = False

    @property
    def pg_type(self) -> str:
        return PG_TYPES[self.type]

    @property
    def reference(self) -> tuple[str, str] | None:
        if self.references is None:
            return None
        feed, column = self.references.split(".", 1)
        return feed, column


class Control(BaseModel):
    """The money columns a feed's control record (``<file>.control.json``) totals."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amounts: tuple[str, ...]
    currency: str


class Feed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    source: str
    file: str
    format: Literal["csv", "jsonl"]
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    depends_on: tuple[str, ...] = ()
    pii: tuple[str, ...] = ()
    encoding: str = "utf-8"
    tolerated_encodings: tuple[str, ...] = ()
    delimiter: str = ","
    quotechar: str = '"'
    header: bool = True
    sensor_timeout_minutes: int = 360
    # Keep each row's line as delivered in raw._source_line (the source values as text,
    # beside the typed columns). Off: null there, for a feed whose raw storage matters
    # more than having its text in the warehouse (the file keeps it, by path and SHA-256).
    source_line: bool = True
    # A line longer than this is quarantined (LINE_TOO_LONG) without being held whole:
    # the loader's memory follows its 1 MiB blocks, not the longest line of a file.
    max_line_bytes: int = Field(default=4 << 20, ge=1024)
    # More bad lines than this share of a file refuses the file (TOO_MANY_BAD_ROWS): a
    # system that sends that much broken data sends a broken extract, not a few bad rows.
    # Files under bad_share_min_rows lines are refused only when no line is good.
    max_bad_share: float = Field(default=0.05, ge=0, le=1)
    bad_share_min_rows: int = Field(default=100, ge=0)
    # The feed's main amount columns: the raw quality gate judges each day's typical
    # magnitude (geometric mean of the non-zero |values|) against the feed's own history
    # (a unit shift, a currency mix-up).
    scales: tuple[str, ...] = ()
    # Money columns summed per currency in the control record the source sends with the file.
    control: Control | None = None

    @model_validator(mode="after")
    def _keys_are_columns(self) -> Feed:
        names = {c.name for c in self.columns}
        unknown = [k for k in (*self.key, *self.pii, *self.scales) if k not in names]
        if unknown:
            raise ValueError(f"feed {self.name}: key/pii/scales columns {unknown} are not declared columns")
        if self.control is not None:
            bad = [c for c in (*self.control.amounts, self.control.currency) if c not in names]
            if bad:
                raise ValueError(f"feed {self.name}: control columns {bad} are not declared columns")
        return self

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def raw_table(self) -> str:
        return f"raw.{self.name}"

    @property
    def asset_uri(self) -> str:
        """Airflow asset of the feed's raw table, on the warehouse the platform connects to:
        its OpenLineage name is the one dbt gives the same source table (``crm.lineage``)."""
        from crm.lineage import table_asset_uri

        return table_asset_uri("raw", self.name)

    @property
    def quarantine_table(self) -> str:
        return f"quarantine.{self.name}"

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"feed {self.name} has no column {name!r}")


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    feeds: dict[str, Feed]
    row_reasons: dict[str, str] = Field(default_factory=dict)
    file_rules: dict[str, str] = Field(default_factory=dict)

    def feed(self, name: str) -> Feed:
        try:
            return self.feeds[name]
        except KeyError:
            raise KeyError(f"unknown feed {name!r}; known feeds: {', '.join(self.feeds)}") from None

    def load_order(self) -> list[Feed]:
        """Feeds ordered so every feed comes after the feeds it depends on."""
        done: dict[str, Feed] = {}

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in done:
                return
            if name in path:
                raise ValueError(f"cycle in feed dependencies: {' -> '.join((*path, name))}")
            feed = self.feed(name)
            for dep in feed.depends_on:
                visit(dep, (*path, name))
            done[name] = feed

        for name in self.feeds:
            visit(name, ())
        return list(done.values())


@lru_cache(maxsize=4)
def load_registry(path: Path = REGISTRY_PATH) -> Registry:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    defaults = data.pop("defaults", {})
    feeds = {name: Feed(name=name, **{**defaults, **spec}) for name, spec in data.pop("feeds").items()}
    return Registry(feeds=feeds, **data)
