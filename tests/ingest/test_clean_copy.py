"""The clean-file path (one typed COPY) against the row-by-row path: same rules, same rows."""

from __future__ import annotations

import psycopg
import pytest

from crm.feeds import load_registry
from crm.ingest import load_file

from .test_loader import CUSTOMERS, DAY, VISITS, counts, customer_row, visit_row, write_csv

# No comma in the address, so the file has no quoted field and can take the clean path.
CLEAN = {"address": "北京市朝阳区1号"}


def load_customer_one(tmp_path, loader_conn) -> None:
    """Customer C000000001 in raw, so the references of the file under test resolve."""
    load_file(
        loader_conn,
        CUSTOMERS,
        DAY,
        write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, [customer_row(1, **CLEAN)]),
    )


def rows_of(db, feed: str) -> list[tuple]:
    """The day's rows without what differs between two loads (load id, loaded-at)."""
    cols = [
        r[0]
        for r in db.execute(
            "select column_name from information_schema.columns where table_schema = 'raw'"
            " and table_name = %s and column_name not in ('_load_id', '_loaded_at') order by ordinal_position",
            (feed,),
        )
    ]
    select = ", ".join(f'"{c}"' for c in cols)
    return db.execute(
        f"select {select} from raw.{feed} where _business_date = %s order by _line_number", (DAY,)
    ).fetchall()


def test_clean_file_is_one_typed_copy_with_the_same_rows_as_the_row_path(tmp_path, loader_conn, db):
    rows = [customer_row(i, **CLEAN, referred_by="C000000001" if i % 3 == 0 else "") for i in range(1, 301)]
    path = write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, rows)
    fast = load_file(loader_conn, CUSTOMERS, DAY, path)
    assert (fast.method, fast.rows_loaded, fast.rows_quarantined) == ("copy", 300, 0)
    copied = rows_of(db, "core_customers")
    lines = db.execute("select _line_number from raw.core_customers order by _line_number").fetchall()
    assert [n for (n,) in lines] == list(range(2, 302)), "the line number is the line's number in the file"

    # The load's constants (kept once per partition, not per row) read back on every row.
    assert (
        db.execute(
            "select distinct _load_id, _loaded_at, _source_file, _file_sha256 from raw.core_customers"
        ).fetchall()
        == db.execute(
            "select load_id, started_at, file_path, file_sha256 from audit.load_log where load_id = %s",
            (fast.load_id,),
        ).fetchall()
    )

    slow = load_file(loader_conn, CUSTOMERS, DAY, path, force=True, clean_copy=False)
    assert (slow.method, slow.rows_loaded) == ("rows", 300)
    assert rows_of(db, "core_customers") == copied
    assert counts(db, "core_customers") == (300, 0)
    # The replaced partition is a plain partition again: no leftover rule constraints or defaults.
    leftovers = db.execute(
        "select count(*) from pg_constraint where conrelid = 'raw.core_customers_p20260105'::regclass"
    ).fetchone()[0]
    assert leftovers == 0


@pytest.mark.parametrize(
    ("override", "reason", "column"),
    [
        # PostgreSQL would read 01/02/2026 as 2 January: the ISO shape check must catch it.
        ({"birth_date": "01/02/1980"}, "BAD_TYPE", "birth_date"),
        ({"updated_at": "2026-01-05T9:00"}, "BAD_TYPE", "updated_at"),
        ({"mobile": "2345"}, "BAD_PATTERN", "mobile"),
        ({"city": ""}, "MISSING_REQUIRED", "city"),
        ({"family_size": "3.5"}, "BAD_TYPE", "family_size"),
        ({"family_size": "99"}, "OUT_OF_RANGE", "family_size"),
        ({"status": "gone"}, "NOT_ACCEPTED", "status"),
        ({"onboarding_date": "2026-01-06"}, "FUTURE_DATE", "onboarding_date"),
        ({"customer_id": "C000000001"}, "DUPLICATE_KEY", "customer_id"),
        # A quoted field is checked with the csv module: the bad date beside it is still found.
        ({"address": "北京市, 朝阳区", "birth_date": "1980/05/01"}, "BAD_TYPE", "birth_date"),
    ],
)
def test_one_bad_line_sends_the_file_row_by_row_and_only_it_is_quarantined(
    tmp_path, loader_conn, db, override, reason, column
):
    rows = [customer_row(i, **CLEAN) for i in range(1, 101)]
    rows[41] = customer_row(42, **{**CLEAN, **override})
    path = write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, rows)
    result = load_file(loader_conn, CUSTOMERS, DAY, path)
    assert result.method == "rows"
    assert (result.rows_loaded, result.rows_quarantined) == (99, 1)
    assert db.execute(
        "select _line_number, reason, column_name from quarantine.core_customers"
    ).fetchall() == [(43, reason, column)]


def test_quoted_fields_keep_the_clean_path(tmp_path, loader_conn, db):
    rows = [customer_row(i, **CLEAN) for i in range(1, 101)]
    rows[6] = customer_row(7, address='北京市, "朝阳区" 1号', full_name="王伟")
    path = write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, rows)
    assert '"' in path.read_text(encoding="utf-8")
    result = load_file(loader_conn, CUSTOMERS, DAY, path)
    assert (result.method, result.rows_loaded) == ("copy", 100)
    assert db.execute(
        "select address, _line_number from raw.core_customers where customer_id = 'C000000007'"
    ).fetchone() == (
        '北京市, "朝阳区" 1号',
        8,
    )


def test_unknown_reference_sends_the_file_row_by_row(tmp_path, loader_conn, db):
    load_customer_one(tmp_path, loader_conn)
    visit = visit_row(remark="ok")
    stranger = visit_row(remark="ok", ticket_id="Q000000000002", customer_id="C000000777")
    path = write_csv(tmp_path / "v.csv", VISITS.column_names, [visit, stranger], delimiter=";")
    result = load_file(loader_conn, VISITS, DAY, path)
    assert (result.method, result.rows_loaded, result.reasons) == ("rows", 1, {"UNKNOWN_REFERENCE": 1})


def test_clean_gbk_crlf_bom_files_take_the_clean_path(tmp_path, loader_conn, db):
    load_customer_one(tmp_path, loader_conn)
    visit = visit_row()
    gbk = write_csv(
        tmp_path / "g.csv", VISITS.column_names, [visit], delimiter=";", encoding="gbk", lineterminator="\r\n"
    )
    result = load_file(loader_conn, VISITS, DAY, gbk)
    assert result.method == "copy" and result.rows_loaded == 1
    assert {w.split(":")[0] for w in result.warnings} == {"ENCODING_CONVERTED", "CRLF"}
    assert db.execute("select remark, wait_seconds from raw.branch_visits").fetchone() == ("客户很满意", 300)

    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + gbk.read_bytes().decode("gbk").encode("utf-8"))
    again = load_file(loader_conn, VISITS, DAY, bom)
    assert (again.method, again.rows_loaded) == ("copy", 1)
    assert db.execute("select remark, _line_number from raw.branch_visits").fetchall() == [("客户很满意", 2)]


def test_crash_mid_clean_copy_leaves_the_previous_day_then_retry_loads_once(
    tmp_path, loader_conn, db, monkeypatch
):
    from crm.ingest import LoadFailed, lines

    rows = [customer_row(i, **CLEAN) for i in range(1, 3001)]
    path = write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, rows)
    assert load_file(loader_conn, CUSTOMERS, DAY, path).method == "copy"
    monkeypatch.setattr(lines, "BLOCK", 4096)  # many COPY writes: the crash is mid-stream

    class Boom(RuntimeError):
        pass

    real_write = psycopg.Copy.write
    calls = {"n": 0}

    def exploding_write(self, buffer):
        calls["n"] += 1
        if calls["n"] == 5:
            raise Boom("connection lost mid-COPY")
        return real_write(self, buffer)

    monkeypatch.setattr(psycopg.Copy, "write", exploding_write)
    with pytest.raises(LoadFailed) as failed:
        load_file(loader_conn, CUSTOMERS, DAY, path, force=True)
    assert isinstance(failed.value.__cause__, Boom) and failed.value.rule == "LOAD_ERROR"
    assert counts(db, "core_customers") == (3000, 0), "the failed load leaves the previous copy"
    assert db.execute("select count(*) from pg_tables where tablename like '\\_load\\_%'").fetchone()[0] == 0
    monkeypatch.setattr(psycopg.Copy, "write", real_write)
    retry = load_file(loader_conn, CUSTOMERS, DAY, path, force=True)
    assert (retry.method, retry.rows_loaded) == ("copy", 3000)
    assert counts(db, "core_customers") == (3000, 0)


def test_python_checks_registry_patterns_exactly_as_postgresql_does(db):
    """Where Python checks a pattern instead of a CHECK constraint, both engines agree."""
    import re

    from crm.ingest.clean_lines import python_field

    probes = [
        "C000000001",
        "C00000000",
        "C0000000010",
        "c000000001",
        " C000000001",
        "A00000000001",
        "BR001",
        "BR01",
        "RM0001",
        "13812345678",
        "12812345678",
        "11010519491231002X",
        "11010519491231002x",
        "1234",
        "12345",
        "T12345678901234",
        "Q000000000001",
        "E00000000000001",
        "K000000000001",
        "CP0000000001",
        "M000000000001",
        "R0000000001",
        "S0000000001",
        "٣٣٣٣",
        "BR001\n",
    ]
    checked = 0
    for feed in load_registry().load_order():
        for col in feed.columns:
            field = python_field(col, feed.delimiter)
            if not col.pattern or field is None:
                continue
            for value in probes:
                in_pg = db.execute("select %s ~ %s", (value, col.pattern)).fetchone()[0]
                in_python = (
                    re.fullmatch(field[:-1].encode(), value.encode()) is not None
                )  # without the "null" `?`
                assert in_python == in_pg, (feed.name, col.name, value)
                checked += 1
    assert checked > 300


SESSIONS = load_registry().feed("online_sessions")


def session(n: int, **overrides) -> str:
    import json

    doc = {
        "session_id": f"S{n:010d}",
        "customer_id": "C000000001",
        "login_at": "2026-01-05T09:00:00+08:00",
        "logout_at": None,
        "page_views": 12,
        "transactions": 1,
        "browser": 'Edge "mobile" \\ 1',  # a quote and a backslash survive COPY's text format
        "login_result": "success",
    }
    doc.update(overrides)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}, ensure_ascii=False) + "\n"


def test_clean_json_lines_are_one_copy_with_the_same_rows_as_the_row_path(tmp_path, loader_conn, db):
    load_customer_one(tmp_path, loader_conn)
    path = tmp_path / "sessions.jsonl"
    path.write_text(
        "".join(session(i, device="phone" if i == 3 else ...) for i in range(1, 201)), encoding="utf-8"
    )
    fast = load_file(loader_conn, SESSIONS, DAY, path)
    assert (fast.method, fast.rows_loaded, fast.rows_quarantined) == ("copy", 200, 0)
    copied = rows_of(db, "online_sessions")
    slow = load_file(loader_conn, SESSIONS, DAY, path, force=True, clean_copy=False)
    assert (slow.method, slow.rows_loaded) == ("rows", 200)
    assert rows_of(db, "online_sessions") == copied
    browser, extra, line = db.execute(
        "select browser, _extra, _line_number from raw.online_sessions where session_id = 'S0000000003'"
    ).fetchone()
    assert (browser, extra, line) == ('Edge "mobile" \\ 1', {"device": "phone"}, 3)


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("{not json\n", "BAD_JSON"),
        ('["an", "array"]\n', "BAD_JSON"),
        (
            '{"session_id": "S9", "customer_id": "C000000001", "login_at": NaN, "login_result": "success"}\n',
            "BAD_JSON",
        ),
        (None, "BAD_TYPE"),  # a timestamp PostgreSQL would parse but that is not ISO 8601
        (None, "NOT_ACCEPTED"),
    ],
)
def test_one_bad_json_line_sends_the_file_row_by_row(tmp_path, loader_conn, db, bad_line, reason):
    load_customer_one(tmp_path, loader_conn)
    if bad_line is None:
        bad_line = session(
            99,
            **({"login_at": "Jan 5 2026 09:00 +08"} if reason == "BAD_TYPE" else {"login_result": "maybe"}),
        )
    lines = [session(i) for i in range(1, 21)]
    lines[9] = bad_line
    path = tmp_path / "sessions.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    result = load_file(loader_conn, SESSIONS, DAY, path)
    assert (result.method, result.rows_loaded, result.reasons) == ("rows", 19, {reason: 1})
    assert db.execute("select _line_number from quarantine.online_sessions").fetchall() == [(10,)]


def test_a_header_only_file_is_a_clean_day_with_no_rows(tmp_path, loader_conn, db):
    """A CDC feed with no change on the day delivers its header only: zero rows, clean path
    (it used to send COPY an empty line, fail, and load row by row)."""
    path = write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, [])
    result = load_file(loader_conn, CUSTOMERS, DAY, path)
    assert (result.method, result.rows_in_file, result.rows_loaded, result.rows_quarantined) == (
        "copy",
        0,
        0,
        0,
    )
    assert counts(db, "core_customers") == (0, 0)


def file_lines(path, encoding: str = "utf-8", header: bool = True) -> list[tuple[int, str]]:
    """(line number, line as delivered without BOM or line end) for every data line."""
    text = path.read_bytes().decode(encoding).removeprefix("\ufeff")
    lines = [(n, line.removesuffix("\r")) for n, line in enumerate(text.split("\n")[:-1], start=1)]
    return lines[1:] if header else lines


def source_lines(db, feed: str) -> list[tuple[int, str]]:
    return db.execute(f"select _line_number, _source_line from raw.{feed} order by _line_number").fetchall()


@pytest.mark.parametrize("clean_copy", [True, False], ids=["clean-path", "row-path"])
def test_every_raw_row_keeps_its_source_line_beside_the_typed_values(tmp_path, loader_conn, db, clean_copy):
    """Raw keeps the source values as text (the line as delivered) beside the typed columns,
    on both paths, for CSV (quoted fields; GBK, CRLF, BOM) and JSON Lines (escapes)."""
    rows = [customer_row(i, **CLEAN) for i in range(1, 31)]
    rows[6] = customer_row(7, address='北京市, "朝阳区" 1号', full_name="王伟")
    customers = write_csv(tmp_path / "c.csv", CUSTOMERS.column_names, rows)
    method = "copy" if clean_copy else "rows"
    result = load_file(loader_conn, CUSTOMERS, DAY, customers, clean_copy=clean_copy)
    assert result.method == method
    assert source_lines(db, "core_customers") == file_lines(customers)
    assert db.execute(
        "select address from raw.core_customers where _source_line like %s", ('%"北京市, ""朝阳区"" 1号"%',)
    ).fetchone() == ('北京市, "朝阳区" 1号',), (
        "the typed column holds the parsed value, the source line the text"
    )

    gbk = write_csv(
        tmp_path / "g.csv",
        VISITS.column_names,
        [visit_row(), visit_row(ticket_id="Q000000000002", remark="")],
        delimiter=";",
        encoding="gbk",
        lineterminator="\r\n",
    )
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + gbk.read_bytes().decode("gbk").encode("utf-8"))
    for path, encoding in ((gbk, "gbk"), (bom, "utf-8")):
        loaded = load_file(loader_conn, VISITS, DAY, path, clean_copy=clean_copy, force=True)
        assert (loaded.method, loaded.rows_loaded) == (method, 2)
        assert source_lines(db, "branch_visits") == file_lines(path, encoding)

    sessions = tmp_path / "sessions.jsonl"
    sessions.write_bytes(
        "".join(session(i, device="phone" if i == 3 else ...) for i in range(1, 11))
        .encode()
        .replace(b"\n", b"\r\n")
    )
    jsonl = load_file(loader_conn, SESSIONS, DAY, sessions, clean_copy=clean_copy)
    assert (jsonl.method, jsonl.rows_loaded) == (method, 10)
    assert source_lines(db, "online_sessions") == file_lines(sessions, header=False)
    assert "\\\\" in dict(source_lines(db, "online_sessions"))[3], "a JSON escape is kept as written"


@pytest.mark.parametrize("clean_copy", [True, False], ids=["clean-path", "row-path"])
def test_a_feed_may_leave_its_source_lines_out_of_raw(tmp_path, loader_conn, db, clean_copy):
    load_customer_one(tmp_path, loader_conn)
    lean = VISITS.model_copy(update={"source_line": False})
    path = write_csv(tmp_path / "v.csv", VISITS.column_names, [visit_row()], delimiter=";")
    result = load_file(loader_conn, lean, DAY, path, clean_copy=clean_copy)
    assert (result.method, result.rows_loaded) == ("copy" if clean_copy else "rows", 1)
    assert db.execute("select remark, _source_line from raw.branch_visits").fetchall() == [
        ("客户很满意", None)
    ]

    sessions = tmp_path / "sessions.jsonl"
    sessions.write_text(session(1), encoding="utf-8")
    lean_jsonl = SESSIONS.model_copy(update={"source_line": False})
    assert load_file(loader_conn, lean_jsonl, DAY, sessions, clean_copy=clean_copy).rows_loaded == 1
    assert db.execute("select _source_line from raw.online_sessions").fetchall() == [(None,)]


@pytest.mark.parametrize("clean_copy", [True, False], ids=["clean-path", "row-path"])
def test_json_whitespace_tabs_and_carriage_returns_load(tmp_path, loader_conn, db, clean_copy):
    """A tab or carriage return between JSON tokens is valid JSON, and a separator or line
    end to COPY's text format: the line is still loaded, as delivered."""
    load_customer_one(tmp_path, loader_conn)
    lines = [session(i) for i in range(1, 6)]
    lines[1] = lines[1].replace('":', '":\t', 2)
    lines[3] = lines[3].replace(", ", ",\r ", 1)
    path = tmp_path / "sessions.jsonl"
    path.write_bytes("".join(lines).encode())
    result = load_file(loader_conn, SESSIONS, DAY, path, clean_copy=clean_copy)
    assert (result.method, result.rows_loaded, result.rows_quarantined) == (
        "copy" if clean_copy else "rows",
        5,
        0,
    )
    assert source_lines(db, "online_sessions") == [
        (n, line.rstrip("\n")) for n, line in enumerate(lines, start=1)
    ]


def test_a_carriage_return_inside_a_csv_field_is_loaded_as_delivered(tmp_path, loader_conn, db):
    load_customer_one(tmp_path, loader_conn)
    path = write_csv(
        tmp_path / "v.csv",
        VISITS.column_names,
        [visit_row(remark="line one\rline two"), visit_row(ticket_id="Q000000000002")],
        delimiter=";",
    )
    assert b"one\rline" in path.read_bytes()
    result = load_file(loader_conn, VISITS, DAY, path)
    assert (result.rows_loaded, result.rows_quarantined) == (2, 0)
    assert db.execute("select remark from raw.branch_visits order by _line_number").fetchall() == [
        ("line one\rline two",),
        ("客户很满意",),
    ]
    assert source_lines(db, "branch_visits") == file_lines(path)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("csv_nul", "NUL_BYTE"),
        ("json_nul", "NUL_BYTE"),
        ("json_u0000", "BAD_JSON"),
        ("json_unpaired_surrogate", "BAD_JSON"),
    ],
)
def test_lines_postgresql_cannot_store_are_quarantined_not_fatal(tmp_path, loader_conn, db, case, reason):
    """Python reads these lines, PostgreSQL cannot store them (a NUL in text; \\u0000 or an
    unpaired surrogate in jsonb). They used to fail the whole load with a COPY error."""
    load_customer_one(tmp_path, loader_conn)
    if case == "csv_nul":
        feed = VISITS
        rows = [visit_row(remark="a\x00b"), visit_row(ticket_id="Q000000000002")]
        path = write_csv(tmp_path / "v.csv", VISITS.column_names, rows, delimiter=";")
        bad_line = 2
    else:
        feed = SESSIONS
        note = {"json_nul": "x\x00y", "json_u0000": "x\\u0000y", "json_unpaired_surrogate": "x\\ud800y"}[case]
        lines = [session(i) for i in range(1, 4)]
        lines[1] = lines[1].replace('"S0000000002"', f'"S0000000002", "note": "{note}"')
        # A surrogate pair is fine: it is one character (an emoji here), loaded as usual.
        lines[2] = lines[2].replace('"S0000000003"', '"S0000000003", "note": "\\ud83d\\ude00"')
        path = tmp_path / "s.jsonl"
        path.write_text("".join(lines), encoding="utf-8")
        bad_line = 2
    result = load_file(loader_conn, feed, DAY, path)
    assert (result.rows_loaded, result.rows_quarantined, result.reasons) == (
        1 if feed is VISITS else 2,
        1,
        {reason: 1},
    )
    (line, got, raw_line) = db.execute(
        f"select _line_number, reason, raw_line from quarantine.{feed.name}"
    ).fetchone()
    assert (line, got) == (bad_line, reason)
    assert "\x00" not in raw_line and raw_line.startswith(
        path.read_text(encoding="utf-8").splitlines()[1][:5]
    )
    if feed is SESSIONS:
        assert db.execute("select _extra from raw.online_sessions where _line_number = 3").fetchone() == (
            {"note": "\U0001f600"},
        )


def test_a_utf16_file_is_refused_for_its_encoding(tmp_path, loader_conn):
    from crm.ingest.loader import FileRefused

    path = write_csv(
        tmp_path / "c.csv",
        CUSTOMERS.column_names,
        [customer_row(i) for i in range(1, 5)],
        encoding="utf-16-le",
    )
    with pytest.raises(FileRefused) as err:
        load_file(loader_conn, CUSTOMERS, DAY, path)
    assert err.value.rule == "ENCODING" and "NUL" in str(err.value)


def test_a_trailing_delimiter_is_an_unnamed_extra_column(tmp_path, loader_conn, db):
    """Some exports end every line with the delimiter: the header's last name is empty.
    That column is extra (kept in _extra where it has a value), not a crash; so is a column
    named like one the loader adds."""
    load_customer_one(tmp_path, loader_conn)
    rows = [visit_row(), visit_row(ticket_id="Q000000000002")]
    rows[1][""] = "x"
    rows[1]["_line_number"] = "7"  # named like a column the loader adds
    path = write_csv(tmp_path / "v.csv", [*VISITS.column_names, "_line_number", ""], rows, delimiter=";")
    result = load_file(loader_conn, VISITS, DAY, path)
    assert (result.rows_loaded, result.rows_quarantined) == (2, 0)
    assert any(
        w.startswith("SCHEMA_EXTRA_COLUMN") and "_line_number_12" in w and "_unnamed_13" in w
        for w in result.warnings
    )
    assert db.execute(
        "select _line_number, _extra from raw.branch_visits order by _line_number"
    ).fetchall() == [
        (2, None),
        (3, {"_line_number_12": "7", "_unnamed_13": "x"}),
    ]


def test_json_nested_deeper_than_python_parses_is_quarantined(tmp_path, loader_conn, db):
    load_customer_one(tmp_path, loader_conn)
    lines = [session(i) for i in range(1, 4)]
    lines[0] = "{not json\n"  # sends the file row by row, where Python parses each line
    lines[1] = lines[1].replace('"S0000000002"', '"S0000000002", "note": ' + "[" * 100_000 + "]" * 100_000)
    path = tmp_path / "s.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    result = load_file(loader_conn, SESSIONS, DAY, path)
    assert (result.method, result.rows_loaded, result.reasons) == ("rows", 1, {"BAD_JSON": 2})


@pytest.mark.parametrize("clean_copy", [True, False], ids=["clean-path", "row-path"])
def test_a_stray_quote_inside_an_unquoted_field_is_kept_on_both_paths(tmp_path, loader_conn, db, clean_copy):
    """At a quote inside an unquoted field PostgreSQL's COPY starts a quoted section (here it
    would silently load 'He said hi'); the csv module keeps the quote. Such a line is not
    RFC 4180, so the clean path hands the file to the row-by-row path, which loads it as
    the csv module reads it."""
    load_customer_one(tmp_path, loader_conn)
    rows = [visit_row(), visit_row(ticket_id="Q000000000002", remark='He said "hi"')]
    lines = [";".join(VISITS.column_names)] + [
        ";".join(r.get(c, "") for c in VISITS.column_names) for r in rows
    ]
    path = tmp_path / "v.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = load_file(loader_conn, VISITS, DAY, path, clean_copy=clean_copy)
    assert (result.method, result.rows_loaded) == ("rows", 2)
    assert db.execute("select remark from raw.branch_visits order by _line_number").fetchall() == [
        ("客户很满意",),
        ('He said "hi"',),
    ]
