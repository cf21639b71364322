"""Files that used to crash, hang or fool the loader: each is now refused or quarantined by
a named rule, recorded in the load audit, and never stops the other feeds of the day."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from crm.feeds import load_registry
from crm.ingest import FileRefused, load_file
from crm.ingest import loader as loader_module
from crm.ingest.lines import LineReader
from crm.ingest.rules import FileRule, RowReason
from crm.ingest.service import ingest_day, landing_path
from crm.settings import get_settings

from .test_loader import CUSTOMERS, DAY, MOBILE, counts, customer_row, write_csv

REG = load_registry()


@pytest.fixture
def landing(tmp_path, monkeypatch, warehouse):
    root = tmp_path / "landing"
    root.mkdir()
    monkeypatch.setenv("CRM_LANDING_DIR", str(root))
    get_settings.cache_clear()
    yield root
    get_settings.cache_clear()


@pytest.fixture
def alarm():
    """Fail instead of hanging: a named pipe used to block the loader for ever."""
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the load hung"))
    signal.alarm(60)
    yield
    signal.alarm(0)


def customers_file(landing, rows=None):
    path = landing_path(CUSTOMERS, DAY, landing)
    return write_csv(path, CUSTOMERS.column_names, rows or [customer_row(i) for i in range(1, 11)])


def fx_file(landing):
    path = landing_path(REG.feed("fx_rates"), DAY, landing)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"rate_date,currency,reporting_currency,rate\n{DAY},CNY,HKD,1.08\n{DAY},HKD,HKD,1\n")
    return path


def log_rows(db, feed):
    return db.execute(
        "select status, rule, error from audit.load_log where feed = %s order by load_id", (feed,)
    ).fetchall()


def test_an_unexpected_error_is_recorded_and_the_other_feeds_still_load(landing, db, monkeypatch):
    customers_file(landing)
    fx_file(landing)
    real_scan = loader_module.scan_file

    def scan(feed, path):
        if feed.name == "core_customers":
            raise MemoryError("customer C000000001 Wang Wei")  # a message that quotes the file
        return real_scan(feed, path)

    monkeypatch.setattr(loader_module, "scan_file", scan)
    results, refused = ingest_day(DAY, ["core_customers", "fx_rates"])
    assert [r.feed for r in results] == ["fx_rates"]
    assert [(e.rule, str(e.path).endswith("customers.csv")) for e in refused] == [("LOAD_ERROR", True)]
    message = str(refused[0])
    assert "\n" not in message and "Wang Wei" not in message and "crm ingest --date" in message
    status, rule, error = log_rows(db, "core_customers")[-1]
    assert (status, rule) == ("failed", "LOAD_ERROR") and "Wang Wei" not in error
    assert counts(db, "fx_rates") == (2, 0)


@pytest.mark.parametrize("kind", ["directory", "fifo", "symlink_in", "symlink_out", "symlinked_day"])
def test_only_regular_files_inside_the_landing_folder_are_read(landing, db, tmp_path, alarm, kind):
    path = landing_path(CUSTOMERS, DAY, landing)
    path.parent.mkdir(parents=True)
    secret = tmp_path / "elsewhere" / "customers.csv"
    write_csv(secret, CUSTOMERS.column_names, [customer_row(1, full_name="Secret Person")])
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink_in":  # a link to another file of the landing folder
        other = write_csv(
            landing / "other.csv", CUSTOMERS.column_names, [customer_row(1, full_name="Secret Person")]
        )
        path.symlink_to(other)
    elif kind == "symlink_out":
        path.symlink_to(secret)
    else:  # the day's folder is a link to a folder outside landing
        path.parent.rmdir()
        path.parent.symlink_to(secret.parent, target_is_directory=True)
    results, refused = ingest_day(DAY, ["core_customers"])
    assert not results
    outside = kind in ("symlink_out", "symlinked_day")
    expected = FileRule.OUTSIDE_LANDING if outside else FileRule.NOT_A_REGULAR_FILE
    assert [e.rule for e in refused] == [expected]
    assert "Secret Person" not in str(refused[0])
    assert log_rows(db, "core_customers")[-1][:2] == ("refused", expected)
    assert counts(db, "core_customers") == (0, 0)


@pytest.mark.parametrize("clean_copy", [True, False])
@pytest.mark.parametrize("depth", [100, 20_000])
def test_deeply_nested_json_is_quarantined_on_both_paths(tmp_path, loader_conn, db, clean_copy, depth):
    load_file(
        loader_conn, CUSTOMERS, DAY, write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, [customer_row(1)])
    )
    good = '{"event_id":"e%d","customer_id":"C000000001","event_ts_ms":1767571200000,"event_type":"login"}\n'
    deep = '{"event_id":"x","customer_id":"C000000001","event_ts_ms":1767571200000,"event_type":"login","n":'
    deep += "[" * depth + "]" * depth + "}\n"
    path = tmp_path / "app_events.jsonl"
    path.write_text(good % 1 + deep + good % 2)
    result = load_file(loader_conn, MOBILE, DAY, path, clean_copy=clean_copy)
    assert (result.rows_loaded, result.reasons) == (2, {"BAD_JSON": 1})
    assert db.execute("select _line_number from quarantine.mobile_events").fetchall() == [(2,)]


def test_a_file_whose_every_line_is_bad_is_refused(tmp_path, loader_conn, db):
    rows = [customer_row(i, birth_date="01/02/1980") for i in range(1, 6)]
    path = write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, rows)
    with pytest.raises(FileRefused) as refused:
        load_file(loader_conn, CUSTOMERS, DAY, path)
    assert refused.value.rule == FileRule.TOO_MANY_BAD_ROWS
    assert "5 of 5 lines" in str(refused.value) and "line 2 BAD_TYPE in column 'birth_date'" in str(
        refused.value
    )
    assert "01/02/1980" not in str(refused.value)
    assert counts(db, "core_customers") == (0, 0)
    assert log_rows(db, "core_customers")[-1][:2] == ("refused", "TOO_MANY_BAD_ROWS")


@pytest.mark.parametrize(("bad", "refused"), [(5, False), (11, True)])
def test_a_bad_row_share_above_the_feeds_limit_refuses_the_file(tmp_path, loader_conn, db, bad, refused):
    """200 lines, the default limit 5 %: 5 bad lines load with them quarantined, 11 refuse the file."""
    assert CUSTOMERS.max_bad_share == 0.05
    rows = [customer_row(i, **({"gender": "X"} if i <= bad else {})) for i in range(1, 201)]
    path = write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, rows)
    if refused:
        with pytest.raises(FileRefused, match="TOO_MANY_BAD_ROWS"):
            load_file(loader_conn, CUSTOMERS, DAY, path)
        assert counts(db, "core_customers") == (0, 0)
    else:
        assert load_file(loader_conn, CUSTOMERS, DAY, path).rows_quarantined == bad
        assert counts(db, "core_customers") == (200 - bad, bad)


@pytest.mark.parametrize("clean_copy", [True, False])
@pytest.mark.parametrize("column", ["years_employed", "annual_income_cny"])
def test_postgresql_16_number_spellings_are_bad_types(tmp_path, loader_conn, db, clean_copy, column):
    spellings = ["0x10", "1_000", "0b1", "0o17", "NaN", "Infinity", "-Infinity"]
    rows = [customer_row(i) for i in range(1, 201)]
    for i, value in enumerate(spellings):
        rows[i] = customer_row(i + 1, **{column: value})
    feed = CUSTOMERS.model_copy(update={"max_bad_share": 0.5})
    path = write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, rows)
    result = load_file(loader_conn, feed, DAY, path, clean_copy=clean_copy)
    assert result.reasons == {"BAD_TYPE": len(spellings)}
    got = db.execute("select distinct reason, column_name from quarantine.core_customers").fetchall()
    assert got == [("BAD_TYPE", column)]
    # Plain spellings still load: signs, decimals, exponents for numerics.
    plain = {"years_employed": ["+3", "-0", "12"], "annual_income_cny": ["1.5e3", ".5", "7."]}[column]
    rows = [customer_row(i, **{column: v}) for i, v in enumerate(plain, start=1)]
    result = load_file(loader_conn, feed, DAY, write_csv(tmp_path / "p.csv", CUSTOMERS.column_names, rows))
    assert (result.rows_loaded, result.reasons) == (3, {})


@pytest.mark.parametrize("clean_copy", [True, False])
def test_a_line_over_the_feeds_limit_is_quarantined_without_being_held(tmp_path, loader_conn, db, clean_copy):
    feed = CUSTOMERS.model_copy(update={"max_line_bytes": 64 * 1024})
    rows = [customer_row(i, **({"address": "x" * (3 << 20)} if i == 4 else {})) for i in range(1, 6)]
    path = write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, rows)  # line 5: a 3 MiB address
    result = load_file(loader_conn, feed, DAY, path, clean_copy=clean_copy)
    assert (result.rows_loaded, result.reasons) == (4, {"LINE_TOO_LONG": 1})
    line, kept = db.execute("select _line_number, length(raw_line) from quarantine.core_customers").fetchone()
    assert line == 5 and kept <= 4096


def test_the_line_reader_holds_at_most_a_block_and_the_line_limit(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"a,b\n" + b"y" * 300_000 + b"\n" + b"c,d\n" * 1000 + b"z" * 5000)
    reader = LineReader(path, max_line=1024)
    blocks = list(reader.blocks())
    assert max(map(len, blocks)) <= 1024 + 1
    lines = b"".join(blocks).split(b"\n")
    assert lines[0] == b"a,b" and lines[1] == b"y" * 1024 and lines[2] == b"c,d"
    assert lines[-2:] == [b"z" * 1024, b""] and reader.long_lines == {2, 1003}
    assert reader.size == path.stat().st_size and not reader.ends_with_newline


def test_a_file_that_changes_while_loading_is_refused(tmp_path, loader_conn, db, monkeypatch):
    path = write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, [customer_row(i) for i in range(1, 51)])
    load_file(loader_conn, CUSTOMERS, DAY, path)
    write_csv(path, CUSTOMERS.column_names, [customer_row(i) for i in range(1, 61)])
    real = loader_module.load_clean

    def append_meanwhile(*args, **kwargs):
        with path.open("a") as fh:  # the sender is still writing
            fh.write("C000000099,I\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(loader_module, "load_clean", append_meanwhile)
    with pytest.raises(FileRefused) as refused:
        load_file(loader_conn, CUSTOMERS, DAY, path)
    assert refused.value.rule == FileRule.FILE_CHANGED
    assert counts(db, "core_customers") == (50, 0), "the day keeps its previous load"
    assert log_rows(db, "core_customers")[-1][:2] == ("refused", "FILE_CHANGED")


def test_a_header_only_file_that_empties_a_day_is_a_recorded_warning(tmp_path, loader_conn, db):
    path = write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, [customer_row(i) for i in range(1, 8)])
    load_file(loader_conn, CUSTOMERS, DAY, path)
    write_csv(path, CUSTOMERS.column_names, [])
    result = load_file(loader_conn, CUSTOMERS, DAY, path)
    assert result.status == "loaded" and counts(db, "core_customers") == (0, 0)
    assert any(w.startswith("DAY_EMPTIED: the day held 7 rows") for w in result.warnings)
    warnings = db.execute(
        "select warnings from audit.load_log where feed = 'core_customers' and status = 'loaded'"
    ).fetchone()[0]
    assert any("DAY_EMPTIED" in w for w in warnings)


def test_reason_codes_and_file_rules_are_the_registrys_lists():
    assert [r.value for r in RowReason] == list(REG.row_reasons)
    assert [r.value for r in FileRule] == list(REG.file_rules)


def test_crm_ingest_prints_one_line_per_refused_file_and_no_traceback(landing, db):
    landing_path(CUSTOMERS, DAY, landing).mkdir(parents=True)
    out = subprocess.run(
        [sys.executable, "-m", "crm.cli", "ingest", "--date", DAY.isoformat(), "--feed", "core_customers"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stdout + out.stderr
    refusals = [line for line in (out.stdout + out.stderr).splitlines() if "NOT_A_REGULAR_FILE" in line]
    assert len(refusals) == 1 and "customers.csv" in refusals[0]


def test_a_file_without_a_header_is_refused_without_echoing_its_first_row(tmp_path, loader_conn, db):
    row = customer_row(1, full_name="Zhang Secret", mobile="13999999999")
    path = tmp_path / "c.csv"
    path.write_text(",".join(f'"{v}"' for v in row.values()) + "\n")  # no header line
    with pytest.raises(FileRefused) as refused:
        load_file(loader_conn, CUSTOMERS, DAY, path)
    message = str(refused.value)
    assert refused.value.rule == "SCHEMA_MISSING_COLUMN" and "not shown" in message
    for column in CUSTOMERS.pii:
        assert row[column] not in message, f"{column} of the first row is in the refusal"
    logged = db.execute("select error from audit.load_log where rule = 'SCHEMA_MISSING_COLUMN'").fetchone()[0]
    assert "Zhang Secret" not in logged and "13999999999" not in logged


def test_a_renamed_column_is_named_in_the_refusal(tmp_path, loader_conn):
    visits = REG.feed("branch_visits")
    header = [("wait_secs" if c == "wait_seconds" else c) for c in visits.column_names]
    path = tmp_path / "visits.csv"
    path.write_text(visits.delimiter.join(header) + "\n")
    with pytest.raises(FileRefused, match=r"lacks registered column\(s\) wait_seconds .*renamed\? wait_secs"):
        load_file(loader_conn, visits, DAY, path)
