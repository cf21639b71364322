"""``crm privacy erase`` on a real warehouse: a generated bank loaded by the real loader and
built by the real dbt project, one customer erased, the bank rebuilt from scratch; then the
whole database (every column of every table, as the superuser) and every file under the CRM
home are searched for anything of that customer.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from crm.feeds import load_registry
from crm.generator import generate
from crm.generator.faults import write_control
from crm.ingest import load_file
from crm.settings import get_settings
from crm.warehouse import role_url

REG = load_registry()
START, DAYS, CUSTOMERS, SEED = dt.date(2026, 1, 1), 3, 150, 11
LAST = START + dt.timedelta(days=DAYS - 1)
LATER = LAST + dt.timedelta(days=1)
REASON = "request REQ-2026-0042 (art. 47)"


def _admin(pg_server, name: str = "postgres") -> str:
    from crm.warehouse import with_database

    return with_database(pg_server.url(), name)


def _superuser(pg_server, name: str) -> str:
    """The embedded server's superuser (crm_admin) on database ``name``: reads every table."""
    from crm.settings import ADMIN

    return pg_server.socket_url(name, role=ADMIN)


def _landing() -> Path:
    return get_settings().landing


def _busiest_customer(landing: Path) -> str:
    """The day-1 customer whose id appears in the most landing files (several feeds)."""
    counts: Counter[str] = Counter()
    first = (landing / "core_customers" / START.isoformat() / "customers.csv").read_text(encoding="utf-8")
    ids = [r["customer_id"] for r in csv.DictReader(io.StringIO(first))]
    for path in landing.rglob("*"):
        if path.is_file() and not path.name.endswith(".control.json") and path.parent.name != "_manifests":
            text = path.read_bytes().decode("utf-8", errors="replace")
            counts.update(i for i in ids if i in text)
    return counts.most_common(1)[0][0]


def _personal(landing: Path, customer_id: str) -> dict[str, str]:
    text = (landing / "core_customers" / START.isoformat() / "customers.csv").read_text(encoding="utf-8")
    row = next(r for r in csv.DictReader(io.StringIO(text)) if r["customer_id"] == customer_id)
    return {
        k: row[k] for k in ("customer_id", "full_name", "mobile", "email", "national_id", "address") if row[k]
    }


def _add_bad_account_line(landing: Path, customer_id: str) -> None:
    """A line of the customer the loader quarantines (currency EUR is not accepted), so the
    customer has a quarantined line with its raw text."""
    path = landing / "core_accounts" / START.isoformat() / "accounts.csv"
    with path.open("a", encoding="utf-8", newline="") as fh:
        fh.write(f"A99999999991,I,{customer_id},SAV,EUR,2025-03-01,,open,,{START} 05:00:00\n")
    # The source's control record and the day's manifest count it, as for any delivered line.
    write_control(REG.feed("core_accounts"), path)
    manifest_path = landing / "_manifests" / f"{START}.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for entry in manifest["files"]:
        if entry["feed"] == "core_accounts":
            entry.update(rows=entry["rows"] + 1, bytes=path.stat().st_size)
            entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def needles(personal: dict[str, str], pseudonyms: dict[str, str]) -> dict[str, str]:
    """What must be found nowhere: the clear values, their sha256, their keyed pseudonyms."""
    found = dict(personal)
    found["sha256(customer_id)"] = hashlib.sha256(personal["customer_id"].encode()).hexdigest()
    found["sha256(national_id)"] = hashlib.sha256(personal["national_id"].encode()).hexdigest()
    found.update(pseudonyms)
    return found


def scan_database(admin_url: str, wanted: dict[str, str]) -> list[str]:
    """(what, table) for each needle in the text of any row of any table or materialised
    view of any schema, pg_statistic included, read as the superuser."""
    hits = []
    with psycopg.connect(admin_url) as conn:
        tables = conn.execute(
            "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where c.relkind in ('r', 'm') and n.nspname not in ('information_schema', 'pg_toast')"
            " and (n.nspname <> 'pg_catalog' or c.relname = 'pg_statistic')"
        ).fetchall()
        for schema, table in tables:
            for what, needle in wanted.items():
                allowed = {"audit.erasures", "audit.erased_subjects"}
                if what == "pseudonym(customer_id)" and f"{schema}.{table}" in allowed:
                    continue
                found = conn.execute(
                    sql.SQL("select count(*) from {} t where strpos(t::text, %s) > 0").format(
                        sql.Identifier(schema, table)
                    ),
                    (needle,),
                ).fetchone()[0]
                if found:
                    hits.append(f"{what} in {schema}.{table} ({found} rows)")
    return hits


def scan_files(home: Path, wanted: dict[str, str]) -> list[str]:
    """(what, file) for each needle in the bytes of any file under the CRM home but the
    database's own data directory (the database is searched through SQL)."""
    hits = []
    for path in home.rglob("*"):
        if "pgdata" in path.relative_to(home).parts or not path.is_file():
            continue
        data = path.read_bytes()
        for what, needle in wanted.items():
            if needle.encode("utf-8") in data or needle in path.name:
                hits.append(f"{what} in {path.relative_to(home)}")
    return hits


@pytest.fixture(scope="module")
def erased(pg_server, crm_home) -> Iterator[dict]:
    """A bank loaded and built, one busy customer erased (twice) and the bank rebuilt, then a
    later delivery naming them loaded."""
    from crm.privacy.erase import erase_customer
    from crm.transform import build
    from crm.warehouse import bootstrap, with_database

    settings = get_settings()
    landing = settings.landing
    generate(customers=CUSTOMERS, start=START, days=DAYS, seed=SEED, out=landing, truth=settings.truth)
    customer_id = _busiest_customer(landing)
    personal = _personal(landing, customer_id)
    _add_bad_account_line(landing, customer_id)
    # A training extract and a binary model artefact naming the customer, as ml writes them.
    models = crm_home / "models" / "churn"
    models.mkdir(parents=True, exist_ok=True)
    (models / "training_extract.csv").write_text(
        f"customer_id,as_of_date,label\n{customer_id},2026-01-03,1\nC999999999,2026-01-03,0\n",
        encoding="utf-8",
    )
    (models / "model.bin").write_bytes(b"\x80\x04\x95\xff" + customer_id.encode() + b"\x00\xfe")

    name = f"erase_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin(pg_server), autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = with_database(pg_server.url(), name)
    bootstrap(url, settings)
    try:
        with psycopg.connect(role_url("crm_loader", base_url=url)) as loader:
            for d in range(DAYS):
                day = START + dt.timedelta(days=d)
                for feed in REG.load_order():
                    load_file(loader, feed, day, landing / feed.name / day.isoformat() / feed.file)
        build(LAST, full_refresh=True, base_url=url)
        with psycopg.connect(url, autocommit=True) as owner:
            owner.execute(
                "insert into ml.churn_scores (customer_id, as_of_date, churn_probability, model_version)"
                " values (%s, %s, 0.42, 'v-test')",
                (customer_id, LAST),
            )
            pseudonyms = {
                "pseudonym(customer_id)": owner.execute(
                    "select private.pseudonym(%s)", (customer_id,)
                ).fetchone()[0],
                "pseudonym(national_id)": owner.execute(
                    "select private.pseudonym(%s)", (personal["national_id"],)
                ).fetchone()[0],
            }
            accounts = [
                r[0]
                for r in owner.execute(
                    "select distinct account_id from raw.core_accounts where customer_id = %s order by 1",
                    (customer_id,),
                )
            ]
        wanted = needles(personal, pseudonyms)
        before_db = scan_database(_superuser(pg_server, name), wanted)
        before_files = scan_files(crm_home, wanted)
        started = time.perf_counter()
        first = erase_customer(customer_id, REASON, url, settings)
        seconds = time.perf_counter() - started
        build(LAST, full_refresh=True, base_url=url)
        second = erase_customer(customer_id, "request REQ-2026-0042, repeated", url, settings)
        # Before the later delivery: its new landing file names the customer (the source sent
        # it after the erasure; the next erase run would clean it).
        files_after = scan_files(crm_home, wanted)
        later = _deliver_later(landing, url, customer_id)
        later_txns = _deliver_later_transactions(landing, url, accounts[0])
        yield {
            "url": url,
            "admin": _superuser(pg_server, name),
            "customer_id": customer_id,
            "wanted": wanted,
            "before_db": before_db,
            "before_files": before_files,
            "first": first,
            "second": second,
            "later": later,
            "later_txns": later_txns,
            "files_after": files_after,
            "seconds": seconds,
        }
    finally:
        with psycopg.connect(_admin(pg_server), autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def _deliver_later(landing: Path, url: str, customer_id: str) -> dict:
    """A new day: the erased customer's CDC update next to another customer's, and an account
    of theirs in the accounts file, loaded by the real loader."""
    from tests.ingest.test_loader import customer_row

    feed = REG.feed("core_customers")
    stamp = f"{LATER} 06:00:00"
    rows = [
        customer_row(1, customer_id=customer_id, change_type="U", updated_at=stamp),
        customer_row(2, customer_id="C888888888", updated_at=stamp),
    ]
    path = landing / feed.name / LATER.isoformat() / feed.file
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=feed.column_names, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: r.get(c, "") for c in feed.column_names} for r in rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    with psycopg.connect(role_url("crm_loader", base_url=url)) as loader:
        result = load_file(loader, feed, LATER, path)
    with psycopg.connect(url) as owner:
        quarantined = owner.execute(
            "select reason, column_name, raw_line, detail from quarantine.core_customers where _business_date = %s",
            (LATER,),
        ).fetchall()
        logged = owner.execute(
            "select rows_in_file, rows_loaded, rows_quarantined from audit.load_log where load_id = %s",
            (result.load_id,),
        ).fetchone()
        loaded = owner.execute(
            "select count(*) from raw.core_customers where _business_date = %s and customer_id = %s",
            (LATER, customer_id),
        ).fetchone()[0]
    return {"result": result, "quarantined": quarantined, "logged": logged, "loaded": loaded}


def _deliver_later_transactions(landing: Path, url: str, account_id: str) -> dict:
    """The same new day's transactions: one on the erased customer's account beside another
    customer's, with the source's control record (it totals both), loaded and reconciled."""
    from crm.quality.recon import reconcile

    feed = REG.feed("core_transactions")
    template = (landing / feed.name / LAST.isoformat() / feed.file).read_text(encoding="utf-8").splitlines()
    header, rows = template[0].split(","), [line.split(",") for line in template[1:3]]
    for i, row in enumerate(rows):
        row[header.index("txn_id")] = f"T9999999999999{i}"
    rows[0][header.index("account_id")] = account_id
    path = landing / feed.name / LATER.isoformat() / feed.file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([template[0], *(",".join(r) for r in rows)]) + "\n", encoding="utf-8")
    write_control(feed, path)
    with psycopg.connect(role_url("crm_loader", base_url=url)) as loader:
        result = load_file(loader, feed, LATER, path)
        breaks = reconcile(loader, LATER, landing)
        loader.commit()
        kept = loader.execute(
            "select raw_line from quarantine.core_transactions where _business_date = %s", (LATER,)
        ).fetchall()
    amount = rows[0][header.index("amount")]
    return {"result": result, "breaks": breaks, "kept": kept, "amount": amount, "account_id": account_id}


def test_the_customer_was_everywhere_before(erased):
    """The search finds the customer before erasure: in raw, quarantine, marts, snapshots,
    ml and the landing files, so finding nothing afterwards means something."""
    before = " ".join(erased["before_db"])
    for place in ("raw.", "quarantine.core_accounts", "marts.", "snapshots.", "ml.churn_scores"):
        assert place in before, f"customer not found in {place} before erasure"
    files = " ".join(erased["before_files"])
    for place in ("landing/core_customers", "landing/core_accounts", "truth/", "models/churn"):
        assert place in files, f"customer not found in {place} before erasure"
    assert "pseudonym(national_id) in marts.dim_customer" in before


def test_nothing_of_the_customer_is_left_in_the_database(erased):
    assert scan_database(erased["admin"], erased["wanted"]) == []


def test_nothing_of_the_customer_is_left_in_any_file(erased):
    assert erased["files_after"] == []


def test_landing_files_stay_valid_and_reload(erased):
    """The rewritten landing files still load with every line accounted for, and their
    control records and manifests say what they hold."""
    landing = _landing()
    day, feed = START, REG.feed("core_accounts")
    path = landing / feed.name / day.isoformat() / feed.file
    data_lines = path.read_text(encoding="utf-8").count("\n") - 1
    control = json.loads((path.parent / (feed.file + ".control.json")).read_text(encoding="utf-8"))
    manifest = json.loads((landing / "_manifests" / f"{day}.json").read_text(encoding="utf-8"))
    entry = next(e for e in manifest["files"] if e["feed"] == feed.name)
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry["bytes"] == path.stat().st_size
    results = {}
    with psycopg.connect(role_url("crm_loader", base_url=erased["url"])) as loader:
        for f in REG.load_order():
            results[f.name] = load_file(
                loader, f, day, landing / f.name / day.isoformat() / f.file, force=True
            )
    for result in results.values():
        assert result.rows_in_file == result.rows_loaded + result.rows_quarantined
    result = results[feed.name]
    # The customer's accounts and quarantined line are gone from file, control record and
    # manifest alike.
    assert result.rows_in_file == data_lines == control["rows"] == entry["rows"]
    assert result.rows_quarantined == 0, "the customer's quarantined line is gone from the file"


def test_the_audit_row_counts_and_names_the_customer_by_pseudonym_only(erased):
    with psycopg.connect(erased["url"]) as owner:
        rows = owner.execute(
            "select subject_hash, db_user, os_user, reason, already_erased, row_counts, file_counts"
            " from audit.erasures order by erasure_id"
        ).fetchall()
        blocked = owner.execute("select kind, count(*) from audit.erased_subjects group by kind").fetchall()
    assert len(rows) == 2
    subject, db_user, os_user, reason, already, row_counts, file_counts = rows[0]
    assert subject == erased["wanted"]["pseudonym(customer_id)"]
    assert db_user == "crm_owner" and os_user and reason == REASON and already is False
    deleted = row_counts["deleted"]
    for table in ("raw.core_customers", "raw.core_accounts", "quarantine.core_accounts", "ml.churn_scores"):
        assert deleted.get(table, 0) >= 1, table
    assert any(t.startswith("snapshots.") for t in deleted) and any(t.startswith("marts.") for t in deleted)
    assert any(t.startswith("raw.keys__") for t in deleted)
    assert file_counts["files_rewritten"] >= 4 and file_counts["lines_removed"] >= 4
    assert file_counts["files_deleted"] == 1  # the binary model artefact
    assert erased["customer_id"] not in json.dumps([list(map(str, r)) for r in rows])
    assert dict(blocked)["customer"] == 1 and dict(blocked).get("account", 0) >= 2
    summary = erased["first"].summary()
    assert erased["customer_id"] not in summary and "rows deleted" in summary
    print(f"erasure of one customer: {erased['seconds']:.2f} s; {summary}")


def test_a_second_erasure_changes_nothing_and_says_so(erased):
    second = erased["second"]
    assert second.already_erased and second.nothing_found, second.summary()
    assert second.summary().startswith("Already erased")
    with psycopg.connect(erased["url"]) as owner:
        counts, already = owner.execute(
            "select row_counts, already_erased from audit.erasures order by erasure_id desc limit 1"
        ).fetchone()
    assert already and counts == {"deleted": {}, "anonymised": {}}


def test_a_later_delivery_of_the_customer_is_quarantined_without_its_text(erased):
    later = erased["later"]
    result = later["result"]
    assert result.reasons == {"ERASED_SUBJECT": 1}
    assert (result.rows_in_file, result.rows_loaded, result.rows_quarantined) == (2, 1, 1)
    assert later["logged"] == (2, 1, 1)  # counted in audit.load_log
    assert later["loaded"] == 0
    ((reason, column, raw_line, detail),) = later["quarantined"]
    assert (reason, column, raw_line) == ("ERASED_SUBJECT", "customer_id", "")
    assert erased["customer_id"] not in detail


def test_the_cli_refuses_a_bad_id_or_a_reason_quoting_it_without_echoing_them(warehouse):
    from crm.privacy.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["erase", "--customer", "X12345", "--reason", "r"])
    assert out.exit_code == 2 and "X12345" not in out.output and "pattern" in out.output
    out = runner.invoke(app, ["erase", "--customer", "C000999999", "--reason", "asked by C000999999"])
    assert out.exit_code == 2 and "C000999999" not in out.output
    out = runner.invoke(app, ["erase", "--customer", "C000999999", "--reason", "REQ-1"])
    assert out.exit_code == 0, out.output
    assert "C000999999" not in out.output and "Erased (audit row 1)" in out.output


def test_a_later_money_line_of_the_customer_still_reconciles_to_the_cent(erased):
    """The source keeps sending the customer's transactions (it must keep its own records):
    quarantined as ERASED_SUBJECT with only the amount and currency its control record
    totals, so the day reconciles, and nothing else of the line is kept."""
    later = erased["later_txns"]
    assert later["result"].reasons == {"ERASED_SUBJECT": 1}
    assert [b for b in later["breaks"] if b.feed == "core_transactions"] == []
    ((line,),) = later["kept"]
    assert later["amount"] in line and later["account_id"] not in line
    assert sum(1 for field in line.split(",") if field) == 2, "amount and currency, nothing else"
