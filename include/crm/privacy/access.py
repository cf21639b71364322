"""``crm privacy access-log``: who read what in the BI-visible schemas, from the server's own log.

pgaudit is not packaged with the embedded PostgreSQL, so the audit is PostgreSQL's statement
log: the reading roles (``crm_bi_reader``, every RM login) have ``log_statement = 'all'`` in
the warehouse's database (migration 0016, ``crm rm grant``); the server writes CSV through its
logging collector into ``<pgdata>/log``, owner-only files (``crm.warehouse.server``). This
command imports the new statement lines of this database into ``audit.bi_access`` (owner
only), keyed on the session id and the session's line number, so importing twice adds
nothing; it remembers how far it read each file and never consumes a record still being
written. An external server writes the same CSV when its DBA sets the same parameters
(docs/security.md, "Access audit"): copy its log files somewhere this process reads and pass
``--log-dir``.

Relations read are what the statement names, schema-qualified, in ``marts``, ``rm`` or
``dq``: cheap, and what a BI tool sends. Not seen: relations reached through a view or
function, or named without their schema through a changed ``search_path``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

# The statement log's messages: simple protocol, then extended (prepared or unnamed).
STATEMENT = re.compile(r"^(?:statement|execute [^:]+): (.*)\Z", re.S)
# Roles whose statements are never imported, should a session of theirs be logged after all
# (the owner may set log_statement): the writers, not readers of the published marts.
NOT_READERS = frozenset({"crm_admin", "crm_owner", "crm_loader", "crm_transformer", "crm_ml"})
BI_SCHEMAS = ("marts", "rm", "dq")
RELATION = re.compile(
    r'(?<![\w$.])("?)(' + "|".join(BI_SCHEMAS) + r')\1\s*\.\s*("(?:[^"]|"")+"|[A-Za-z_][\w$]*)', re.I
)
LEADING_NOISE = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/|\()*", re.S)
FIRST_WORD = re.compile(r"[A-Za-z]+")
# PostgreSQL 16's csvlog columns (the ones read here).
COL_TIME, COL_USER, COL_DB, COL_FROM, COL_SESSION, COL_LINE = 0, 1, 2, 4, 5, 6
COL_MESSAGE, COL_DETAIL, COL_APP = 13, 14, 22
MIN_COLUMNS = 23


class AccessLogError(RuntimeError):
    """A log file could not be read or parsed (the message names the file and line, no values)."""


@dataclass
class ImportResult:
    files: int = 0
    records: int = 0
    statements: int = 0
    imported: int = 0
    skipped_files: list[str] = field(default_factory=list)


def relations_named(statement: str) -> list[str]:
    """The ``schema.relation`` names of the BI-visible schemas in ``statement``, sorted, once
    each; unquoted names folded to lower case as PostgreSQL does."""
    found = set()
    for quote, schema, name in RELATION.findall(statement):
        if quote and schema not in BI_SCHEMAS:  # "Marts" is another schema than marts
            continue
        name = name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()
        found.add(f"{schema.lower()}.{name}")
    return sorted(found)


def command_tag(statement: str) -> str:
    """The statement's first keyword, upper case (``SELECT``, ``WITH``, ``COPY``...)."""
    rest = LEADING_NOISE.sub("", statement, count=1)
    word = FIRST_WORD.match(rest)
    return word.group(0).upper() if word else "UNKNOWN"


def complete_records(data: bytes) -> int:
    """Length of the longest prefix of ``data`` made of whole CSV records: each ends with a
    newline outside quotes (a quote inside a field is doubled, so an even count of quotes
    means outside). The rest is a record the server is still writing."""
    end = quotes = 0
    pos = 0
    while (newline := data.find(b"\n", pos)) != -1:
        quotes += data.count(b'"', pos, newline)
        pos = newline + 1
        if quotes % 2 == 0:
            end = pos
    return end


def parse_statements(
    chunk: bytes, log_file: str, lines_before: int, database: str
) -> tuple[int, list[tuple]]:
    """(records read, rows for ``audit.bi_access``) from whole CSV records of ``log_file`` that
    follow its first ``lines_before`` lines (for the line numbers of errors)."""
    reader = csv.reader(io.StringIO(chunk.decode("utf-8", errors="replace"), newline=""))
    rows = []
    records = 0
    try:
        for record in reader:
            records += 1
            if len(record) < MIN_COLUMNS:
                raise AccessLogError(
                    f"{log_file}:{lines_before + reader.line_num}: {len(record)} columns, a PostgreSQL"
                    f" csvlog record has at least {MIN_COLUMNS}"
                )
            if record[COL_DB] != database or record[COL_USER] in NOT_READERS:
                continue
            match = STATEMENT.match(record[COL_MESSAGE])
            if not match or not record[COL_SESSION] or not record[COL_LINE].isdigit():
                continue
            statement = match.group(1)
            detail = record[COL_DETAIL]
            rows.append(
                (
                    record[COL_SESSION],
                    int(record[COL_LINE]),
                    record[COL_TIME],
                    record[COL_USER],
                    record[COL_DB],
                    record[COL_FROM] or None,
                    record[COL_APP] or None,
                    command_tag(statement),
                    relations_named(statement),
                    statement,
                    detail if detail.startswith("parameters: ") else None,
                    log_file,
                )
            )
    except csv.Error as err:
        raise AccessLogError(f"{log_file}:{lines_before + reader.line_num}: not CSV ({err})") from None
    return records, rows


INSERT = """
insert into audit.bi_access (session_id, session_line, logged_at, role_name, database_name, client,
    application, command_tag, relations, statement, parameters, log_file)
values (%s, %s, %s::timestamptz, %s, %s, %s, %s, %s, %s::text[], %s, %s, %s)
on conflict (session_id, session_line) do nothing
"""


def import_access_log(url: str, log_dir: Path, since: dt.date | None = None) -> ImportResult:
    """Import the new statement lines of ``log_dir``'s CSV files (those modified on or after
    ``since``) into ``audit.bi_access`` of the database at ``url``, one transaction per file."""
    import psycopg

    csv.field_size_limit(1 << 30)  # a statement is one field, and may be long
    result = ImportResult()
    if not log_dir.is_dir():
        raise AccessLogError(f"{log_dir}: no such log directory (is the server's logging collector on?)")
    with psycopg.connect(url) as conn:
        database = conn.info.dbname
        read = {
            name: (done, lines)
            for name, done, lines in conn.execute(
                "select log_file, bytes_read, lines_read from audit.bi_access_files"
            )
        }
        conn.commit()
        for path in sorted(log_dir.glob("*.csv")):
            stat = path.stat()
            modified = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC).date()
            if since and modified < since:
                result.skipped_files.append(path.name)
                continue
            start, lines_before = read.get(path.name, (0, 0))
            if start > stat.st_size:  # a file re-created under the same name
                start = lines_before = 0
            try:
                with open(path, "rb") as handle:
                    handle.seek(start)
                    data = handle.read(stat.st_size - start)
            except OSError as err:
                raise AccessLogError(f"{path}: cannot read ({err.strerror})") from None
            whole = complete_records(data)
            result.files += 1
            if whole == 0:
                continue
            records, rows = parse_statements(data[:whole], path.name, lines_before, database)
            result.records += records
            result.statements += len(rows)
            with conn.transaction():
                with conn.cursor() as cur:
                    cur.executemany(INSERT, rows)
                    result.imported += max(cur.rowcount, 0)
                conn.execute(
                    "insert into audit.bi_access_files (log_file, bytes_read, lines_read) values (%s, %s, %s)"
                    " on conflict (log_file) do update set bytes_read = excluded.bytes_read,"
                    " lines_read = excluded.lines_read, imported_at = now()",
                    (path.name, start + whole, lines_before + data.count(b"\n", 0, whole)),
                )
    return result


SUMMARY = """
select role_name, count(distinct (session_id, session_line)) as queries,
       count(distinct rel) as relations, min(logged_at), max(logged_at)
from audit.bi_access left join lateral unnest(relations) as rel on true
where logged_at >= coalesce(%s::date, '-infinity'::date)
group by role_name order by role_name
"""

# Reading roles of this database without the statement log: what they read is not audited.
UNAUDITED = """
select r.rolname from pg_roles r
where (r.rolname = 'crm_bi_reader'
       or (r.rolcanlogin and not r.rolsuper and r.rolname !~ '^(crm|pg)_'
           and exists (select from pg_auth_members m where m.roleid = 'crm_rm'::regrole and m.member = r.oid)))
  and not exists (
    select 1 from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase
    where s.setrole = r.oid and d.datname = current_database()
      and 'log_statement=all' = any(s.setconfig))
order by 1
"""


def access_summary(url: str, since: dt.date | None = None) -> tuple[list[tuple], list[str]]:
    """Per role (queries, distinct relations, first, last) since ``since``; the unaudited roles."""
    import psycopg

    with psycopg.connect(url) as conn:
        summary = conn.execute(SUMMARY, (since,)).fetchall()
        unaudited = [row[0] for row in conn.execute(UNAUDITED)]
    return summary, unaudited


def default_log_dir() -> Path | None:
    from crm.settings import get_settings
    from crm.warehouse.server import AUDIT_LOG_DIR

    settings = get_settings()
    return settings.pgdata / AUDIT_LOG_DIR if settings.embedded else None


def access_log_cmd(
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Only log files written from this day (YYYY-MM-DD) on, and summarise from it."
        ),
    ] = None,
    log_dir: Annotated[
        Path | None,
        typer.Option("--log-dir", help="The server's CSV log files (default: the embedded warehouse's)."),
    ] = None,
) -> None:
    """Import the reading roles' statements from the server log into audit.bi_access; summarise per role."""
    from crm.warehouse import ensure_ready

    try:
        day = dt.date.fromisoformat(since) if since else None
    except ValueError:
        typer.echo("crm privacy access-log: --since: a day as YYYY-MM-DD", err=True)
        raise typer.Exit(2) from None
    directory = log_dir or default_log_dir()
    if directory is None:
        typer.echo(
            "crm privacy access-log: an external warehouse (WAREHOUSE_URL): copy its CSV log files here"
            " and pass --log-dir (docs/security.md, 'Access audit')",
            err=True,
        )
        raise typer.Exit(2)
    url = ensure_ready()
    try:
        result = import_access_log(url, directory, day)
    except AccessLogError as err:
        typer.echo(f"crm privacy access-log: {err}", err=True)
        raise typer.Exit(1) from None
    summary, unaudited = access_summary(url, day)
    typer.echo(
        f"Read {result.records} log records in {result.files} files: {result.statements} statements"
        f" of reading roles, {result.imported} new."
    )
    typer.echo(f"{'role':<32} {'queries':>8} {'relations':>9}  first / last")
    for role, queries, relations, first, last in summary:
        typer.echo(f"{role:<32} {queries:>8} {relations:>9}  {first:%Y-%m-%d %H:%M} / {last:%Y-%m-%d %H:%M}")
    if unaudited:
        typer.echo(f"Not audited (no log_statement in this database): {', '.join(unaudited)}", err=True)
