"""The loader against a real PostgreSQL: one copy per day, nothing lost, clear refusals."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pytest

from crm.feeds import Column, load_registry
from crm.ingest import FileRefused, LoadBalanceError, LoadFailed, load_file
from crm.ingest import lines as lines_module
from crm.ingest import loader as loader_module
from crm.ingest import stage as stage_module

DAY = dt.date(2026, 1, 5)
REG = load_registry()
CUSTOMERS = REG.feed("core_customers")
VISITS = REG.feed("branch_visits")
MOBILE = REG.feed("mobile_events")


def customer_row(n: int, **overrides: str) -> dict[str, str]:
    row = {
        "customer_id": f"C{n:09d}",
        "change_type": "I",
        "national_id": "11010519491231002X",
        "full_name": "王伟",
        "mobile": "13812345678",
        "email": "w@example.cn",
        "address": "北京市朝阳区, 1号",
        "gender": "M",
        "birth_date": "1980-05-01",
        "occupation": "engineer",
        "years_employed": "10",
        "annual_income_cny": "250000.50",
        "family_role": "head",
        "family_size": "3",
        "city": "Beijing",
        "home_branch_id": "BR001",
        "onboarding_date": "2020-01-01",
        "status": "active",
        "rm_id": "RM0001",
        "referred_by": "",
        "marketing_consent": "Y",
        "updated_at": "2026-01-05 09:00:00",
    }
    row.update(overrides)
    return row


def visit_row(**overrides: str) -> dict[str, str]:
    row = {
        "ticket_id": "Q000000000001",
        "branch_id": "BR001",
        "customer_id": "C000000001",
        "ticket_time": "2026-01-05 09:00:00",
        "wait_seconds": "300",
        "service_type": "cash",
        "remark": "客户很满意",
    }
    row.update(overrides)
    return row


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]], delimiter: str = ",", **kw) -> Path:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator=kw.get("lineterminator", "\n"))
    w.writerow(header)
    for r in rows:
        w.writerow([r.get(h, "") for h in header])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue().encode(kw.get("encoding", "utf-8")))
    return path


def counts(db, feed: str, day: dt.date = DAY) -> tuple[int, int]:
    raw = db.execute(f"select count(*) from raw.{feed} where _business_date = %s", (day,)).fetchone()[0]
    q = db.execute(f"select count(*) from quarantine.{feed} where _business_date = %s", (day,)).fetchone()[0]
    return raw, q


def test_rerun_of_same_day_leaves_one_copy(tmp_path, loader_conn, db):
    path = write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, [customer_row(i) for i in range(1, 51)])
    first = load_file(loader_conn, CUSTOMERS, DAY, path)
    assert (first.status, first.rows_loaded) == ("loaded", 50)
    again = load_file(loader_conn, CUSTOMERS, DAY, path)
    assert again.status == "skipped_duplicate"
    forced = load_file(loader_conn, CUSTOMERS, DAY, path, force=True)
    assert forced.rows_loaded == 50
    assert counts(db, "core_customers") == (50, 0)
    statuses = [r[0] for r in db.execute("select status from audit.load_log order by load_id")]
    assert statuses == ["superseded", "loaded"]


def test_redelivered_corrected_file_replaces_the_day(tmp_path, loader_conn, db):
    path = tmp_path / "c.csv"
    write_csv(path, CUSTOMERS.column_names, [customer_row(i) for i in range(1, 11)])
    load_file(loader_conn, CUSTOMERS, DAY, path)
    write_csv(path, CUSTOMERS.column_names, [customer_row(i) for i in range(1, 8)])
    load_file(loader_conn, CUSTOMERS, DAY, path)
    assert counts(db, "core_customers") == (7, 0)


def test_crash_mid_copy_then_retry_leaves_exactly_one_copy(tmp_path, loader_conn, db, monkeypatch):
    path = write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, [customer_row(i) for i in range(1, 5001)])
    load_file(loader_conn, CUSTOMERS, DAY, path)
    monkeypatch.setattr(lines_module, "BLOCK", 4096)  # many COPY writes, so the crash is mid-stream
    original = stage_module.Quarantined
    calls = {"n": 0}

    class Boom(RuntimeError):
        pass

    real_write = psycopg.Copy.write

    def exploding_write(self, buffer):
        calls["n"] += 1
        if calls["n"] == 5:
            raise Boom("connection lost mid-COPY")
        return real_write(self, buffer)

    monkeypatch.setattr(psycopg.Copy, "write", exploding_write)
    with pytest.raises(LoadFailed) as refused:  # the row-by-row path (test_clean_copy crashes the clean one)
        load_file(loader_conn, CUSTOMERS, DAY, path, force=True, clean_copy=False)
    assert isinstance(refused.value.__cause__, Boom)
    assert counts(db, "core_customers") == (5000, 0), "the failed load must leave the previous copy intact"
    monkeypatch.setattr(psycopg.Copy, "write", real_write)
    assert original is stage_module.Quarantined
    retry = load_file(loader_conn, CUSTOMERS, DAY, path, force=True)
    assert retry.rows_loaded == 5000
    assert counts(db, "core_customers") == (5000, 0)
    failed = db.execute("select status, error from audit.load_log where status = 'failed'").fetchall()
    assert len(failed) == 1 and "unexpected Boom" in failed[0][1] and "(rule LOAD_ERROR)" in failed[0][1]


def test_each_broken_rule_is_quarantined_with_its_reason(tmp_path, loader_conn, db):
    rows = [
        customer_row(1),
        customer_row(2, full_name=""),  # line 3
        customer_row(3, birth_date="2026-02-30"),  # line 4
        customer_row(4, birth_date="03/15/1990"),  # line 5: not ISO
        customer_row(5, annual_income_cny="-5"),  # line 6
        customer_row(6, updated_at="2027-01-01 00:00:00"),  # line 7
        customer_row(7, gender="X"),  # line 8
        customer_row(8, mobile="12345"),  # line 9
        customer_row(1),  # line 10: duplicate key
        customer_row(9, years_employed="ten"),  # line 11
    ]
    path = write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, rows)
    with path.open("a") as fh:
        fh.write("C000000010,I,only,three\n")  # line 12: wrong field count
    result = load_file(loader_conn, CUSTOMERS, DAY, path)
    got = db.execute(
        "select _line_number, reason, column_name from quarantine.core_customers order by 1"
    ).fetchall()
    assert got == [
        (3, "MISSING_REQUIRED", "full_name"),
        (4, "BAD_TYPE", "birth_date"),
        (5, "BAD_TYPE", "birth_date"),
        (6, "OUT_OF_RANGE", "annual_income_cny"),
        (7, "FUTURE_DATE", "updated_at"),
        (8, "NOT_ACCEPTED", "gender"),
        (9, "BAD_PATTERN", "mobile"),
        (10, "DUPLICATE_KEY", "customer_id"),
        (11, "BAD_TYPE", "years_employed"),
        (12, "BAD_COLUMN_COUNT", None),
    ]
    assert (result.rows_in_file, result.rows_loaded, result.rows_quarantined) == (11, 1, 10)
    raw_line = db.execute(
        "select raw_line from quarantine.core_customers where _line_number = 12"
    ).fetchone()[0]
    assert raw_line == "C000000010,I,only,three"
    logged = db.execute(
        "select rows_in_file, rows_loaded, rows_quarantined from audit.load_log where status = 'loaded'"
    ).fetchone()
    assert logged == (11, 1, 10)


def test_unknown_customer_reference_is_quarantined(tmp_path, loader_conn, db):
    load_file(
        loader_conn, CUSTOMERS, DAY, write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, [customer_row(1)])
    )
    path = tmp_path / "app_events.jsonl"
    path.write_text(
        '{"event_id":"e1","customer_id":"C000000001","event_ts_ms":1767571200000,"event_type":"login","os":"ios"}\n'
        '{"event_id":"e2","customer_id":"C000000999","event_ts_ms":1767571200000,"event_type":"login","os":"ios"}\n'
        '{"event_id":"e3","customer_id":"C000000001","event_ts_ms":1767571200000,"event_type":"login","new":1}\n'
        "{not json\n"
    )
    result = load_file(loader_conn, MOBILE, DAY, path)
    assert result.reasons == {"UNKNOWN_REFERENCE": 1, "BAD_JSON": 1}
    extra = db.execute("select _extra from raw.mobile_events where event_id = 'e3'").fetchone()[0]
    assert extra == {"new": 1}


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        (b"", "FILE_EMPTY"),
        (b"customer_id,change_type\nC000000001,I", "FILE_TRUNCATED"),
        (b"customer_id,change_type\nC000000001,I\n", "SCHEMA_MISSING_COLUMN"),
        (",".join(["customer_id", *CUSTOMERS.column_names]).encode() + b"\n", "SCHEMA_DUPLICATE_COLUMN"),
        (
            ",".join(CUSTOMERS.column_names).replace("gender", "gen\rder").encode() + b"\n",
            "SCHEMA_BAD_HEADER",
        ),
        (
            ",".join(CUSTOMERS.column_names).replace("gender", '"gender').encode() + b"\n",
            "SCHEMA_BAD_HEADER",
        ),
    ],
)
def test_whole_file_problems_refuse_the_file_and_name_the_rule(tmp_path, loader_conn, db, content, rule):
    path = tmp_path / "customers.csv"
    path.write_bytes(content)
    with pytest.raises(FileRefused) as err:
        load_file(loader_conn, CUSTOMERS, DAY, path)
    assert err.value.rule == rule
    assert str(path) in str(err.value) and rule in str(err.value)
    logged = db.execute("select status, rule from audit.load_log").fetchall()
    assert logged == [("refused", rule)]
    assert db.execute("select count(*) from raw.core_customers").fetchone()[0] == 0


def test_missing_file_is_refused(tmp_path, loader_conn):
    with pytest.raises(FileRefused) as err:
        load_file(loader_conn, CUSTOMERS, DAY, tmp_path / "nope.csv")
    assert err.value.rule == "FILE_MISSING"


def test_tolerated_drift_gbk_bom_crlf_extra_column(tmp_path, loader_conn, db):
    load_file(
        loader_conn, CUSTOMERS, DAY, write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, [customer_row(1)])
    )
    visit = visit_row(queue_colour="blue")
    header = [*VISITS.column_names, "queue_colour"]
    path = write_csv(
        tmp_path / "visits.csv", header, [visit], delimiter=";", encoding="gbk", lineterminator="\r\n"
    )
    result = load_file(loader_conn, VISITS, DAY, path)
    assert result.rows_loaded == 1
    assert any(w.startswith("ENCODING_CONVERTED") for w in result.warnings)
    assert any(w.startswith("CRLF") for w in result.warnings)
    assert any(w.startswith("SCHEMA_EXTRA_COLUMN") for w in result.warnings)
    remark, extra = db.execute("select remark, _extra from raw.branch_visits").fetchone()
    assert remark == "客户很满意" and extra == {"queue_colour": "blue"}

    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().decode("gbk").encode("utf-8"))
    assert load_file(loader_conn, VISITS, DAY, bom, force=True).rows_loaded == 1


@pytest.mark.parametrize("clean_copy", [True, False], ids=["clean_path", "row_path"])
def test_a_column_added_to_the_registry_is_added_to_raw(tmp_path, loader_conn, db, clean_copy):
    """A feed that gains a registered column after its raw table exists: the next load adds
    the column; earlier days read null there."""
    load_file(
        loader_conn, CUSTOMERS, DAY, write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, [customer_row(1)])
    )
    load_file(
        loader_conn, VISITS, DAY, write_csv(tmp_path / "v1.csv", VISITS.column_names, [visit_row()], ";")
    )
    grown = VISITS.model_copy(
        update={"columns": (*VISITS.columns, Column(name="queue_colour", accepted=("blue", "red")))}
    )
    later = DAY + dt.timedelta(days=1)
    path = write_csv(
        tmp_path / "v2.csv",
        grown.column_names,
        [visit_row(ticket_id="Q000000000002", queue_colour="blue")],
        ";",
    )
    result = load_file(loader_conn, grown, later, path, clean_copy=clean_copy)
    assert (result.rows_loaded, result.method) == (1, "copy" if clean_copy else "rows")
    rows = db.execute(
        "select _business_date, queue_colour, _extra from raw.branch_visits order by _business_date"
    ).fetchall()
    assert rows == [(DAY, None, None), (later, "blue", None)]


def test_a_warehouse_from_before_source_lines_gains_the_column(tmp_path, loader_conn, db):
    """Raw tables created before ``_source_line`` existed get it at the next load; the
    days loaded before read null there."""
    load_file(
        loader_conn, CUSTOMERS, DAY, write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, [customer_row(1)])
    )
    db.execute("alter table raw.core_customers drop column _source_line")
    later = DAY + dt.timedelta(days=1)
    path = write_csv(tmp_path / "c2.csv", CUSTOMERS.column_names, [customer_row(2)])
    assert load_file(loader_conn, CUSTOMERS, later, path).rows_loaded == 1
    rows = db.execute(
        "select _business_date, _source_line from raw.core_customers order by _business_date"
    ).fetchall()
    assert rows == [(DAY, None), (later, path.read_text(encoding="utf-8").splitlines()[1])]


def test_undecodable_file_without_tolerated_encoding_is_refused(tmp_path, loader_conn):
    rows = [customer_row(i, full_name="王伟") for i in range(1, 6)]
    path = write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, rows, encoding="gbk")
    with pytest.raises(FileRefused) as err:
        load_file(loader_conn, CUSTOMERS, DAY, path)
    assert err.value.rule == "ENCODING"


def test_late_partition_requests_reprocessing(tmp_path, loader_conn, db):
    later = DAY + dt.timedelta(days=1)
    load_file(
        loader_conn,
        CUSTOMERS,
        later,
        write_csv(tmp_path / "a.csv", CUSTOMERS.column_names, [customer_row(1)]),
    )
    result = load_file(
        loader_conn, CUSTOMERS, DAY, write_csv(tmp_path / "b.csv", CUSTOMERS.column_names, [customer_row(2)])
    )
    assert result.late
    assert db.execute("select feed, business_date, reason from audit.reprocess_requests").fetchall() == [
        ("core_customers", DAY, "late_partition")
    ]


def test_balance_violation_rolls_back(tmp_path, loader_conn, db, monkeypatch):
    path = write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, [customer_row(i) for i in range(1, 4)])
    real_scan = loader_module.scan_file

    def lying_scan(feed, p):
        facts = real_scan(feed, p)
        facts.data_lines += 1  # pretend a row vanished between scan and load
        return facts

    monkeypatch.setattr(loader_module, "scan_file", lying_scan)
    with pytest.raises(LoadFailed) as refused:
        load_file(loader_conn, CUSTOMERS, DAY, path)
    assert isinstance(refused.value.__cause__, LoadBalanceError)
    assert counts(db, "core_customers") == (0, 0)


def test_a_file_of_mixed_encodings_is_not_converted(tmp_path, loader_conn, db):
    """branch_visits tolerates GBK. A UTF-8 file with one GBK line is not a GBK file:
    decoding it as GBK would silently turn every UTF-8 remark into other characters. The
    GBK line is undecodable; with many such lines the file is refused."""
    load_file(
        loader_conn, CUSTOMERS, DAY, write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, [customer_row(1)])
    )
    rows = [visit_row(ticket_id=f"Q{n:012d}", remark="客户很满意，服务很好") for n in range(1, 20)]
    utf8 = write_csv(tmp_path / "u.csv", VISITS.column_names, rows, delimiter=";").read_bytes()

    def gbk_line(n: int) -> bytes:
        row = visit_row(ticket_id=f"Q{n:012d}", remark="排队太久")
        return ";".join(row.get(c, "") for c in VISITS.column_names).encode("gbk") + b"\n"

    path = tmp_path / "v.csv"
    path.write_bytes(utf8 + gbk_line(99))
    result = load_file(loader_conn, VISITS, DAY, path)
    assert (result.rows_loaded, result.reasons) == (19, {"UNDECODABLE": 1})
    assert not any(w.startswith("ENCODING_CONVERTED") for w in result.warnings)
    assert db.execute("select distinct remark from raw.branch_visits").fetchall() == [
        ("客户很满意，服务很好",)
    ]

    path.write_bytes(utf8 + b"".join(gbk_line(n) for n in range(90, 95)))
    with pytest.raises(FileRefused, match="mixed encodings") as err:
        load_file(loader_conn, VISITS, DAY, path)
    assert err.value.rule == "ENCODING"
