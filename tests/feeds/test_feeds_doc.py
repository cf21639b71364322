"""feeds.md is generated from the registry (crm.feeds.doc) and committed in step with it."""

import subprocess
import sys

from typer.testing import CliRunner

from crm.feeds import load_registry
from crm.feeds.cli import app
from crm.feeds.doc import DOC_PATH, render
from crm.feeds.registry import REGISTRY_PATH, Column, Registry
from crm.generator.faults import FAULT_KINDS

runner = CliRunner()


def test_committed_feeds_md_is_what_the_registry_generates():
    committed = DOC_PATH.read_text(encoding="utf-8")
    assert committed == render(load_registry(REGISTRY_PATH)), (
        "include/crm/feeds/feeds.md is out of date with registry.yml: run `crm feeds doc` and commit it"
    )


def test_feeds_md_lists_every_feed_column_reason_and_file_rule():
    registry = load_registry()
    doc = render(registry)
    for feed in registry.load_order():
        assert f"### `{feed.name}` — `{feed.file}`" in doc
        for col in feed.columns:
            assert f"| `{col.name}` | {col.type} |" in doc, f"{feed.name}.{col.name} undocumented"
    for code in (*registry.row_reasons, *registry.file_rules):
        assert f"- `{code}`: " in doc


def test_a_registry_change_changes_the_doc():
    registry = load_registry()
    feed = registry.feed("core_balances")
    cols = (*feed.columns, Column(name="overdraft_limit", type="numeric", min=0, max=9999999999999))
    changed = Registry(
        feeds={**registry.feeds, feed.name: feed.model_copy(update={"columns": cols, "source_line": False})},
        row_reasons=registry.row_reasons,
        file_rules=registry.file_rules,
    )
    doc = render(changed)
    assert doc != render(registry)
    # Numbers as the registry writes them (not 1e+13), and a non-default setting is shown.
    assert "| `overdraft_limit` | numeric | min 0; max 9999999999999 |" in doc
    assert "`_source_line` not kept" in doc


def test_rule_text_with_a_pipe_stays_in_its_table_cell():
    registry = load_registry()
    feed = registry.feed("fx_rates")
    cols = (*feed.columns, Column(name="source", pattern="^(A|B)$"))
    changed = registry.model_copy(
        update={"feeds": {**registry.feeds, feed.name: feed.model_copy(update={"columns": cols})}}
    )
    assert "| `source` | text | pattern `^(A\\|B)$` |" in render(changed)


def test_fault_table_of_the_notes_names_every_fault_kind():
    doc = render(load_registry())
    for kind, spec in FAULT_KINDS.items():
        assert f"| `{kind}` | {spec.level} | {spec.expected} | {spec.outcome} |" in doc, kind


def test_check_passes_on_the_generated_file_and_exits_1_on_a_modified_one(tmp_path):
    target = tmp_path / "feeds.md"
    written = runner.invoke(app, ["doc", "--path", str(target)])
    assert written.exit_code == 0, written.output
    assert target.read_text(encoding="utf-8") == render(load_registry())
    ok = runner.invoke(app, ["doc", "--check", "--path", str(target)])
    assert ok.exit_code == 0, ok.output

    target.write_text(target.read_text(encoding="utf-8").replace("| `rate` | numeric |", "| `rate` | text |"))
    before = target.read_text(encoding="utf-8")
    stale = runner.invoke(app, ["doc", "--check", "--path", str(target)])
    assert stale.exit_code == 1
    assert "differs from what the registry generates; run `crm feeds doc`" in stale.output
    assert "+| `rate` | numeric |" in stale.output  # the diff shows what the registry says
    assert target.read_text(encoding="utf-8") == before  # --check writes nothing

    missing = runner.invoke(app, ["doc", "--check", "--path", str(tmp_path / "absent.md")])
    assert missing.exit_code == 1
    assert "does not exist" in missing.output


def test_crm_feeds_doc_check_through_the_main_cli(tmp_path):
    from crm.cli import app as crm_app

    target = tmp_path / "feeds.md"
    target.write_text("stale\n", encoding="utf-8")
    result = runner.invoke(crm_app, ["feeds", "doc", "--check", "--path", str(target)])
    assert result.exit_code == 1, result.output
    assert runner.invoke(crm_app, ["feeds", "doc", "--path", str(target)]).exit_code == 0
    assert runner.invoke(crm_app, ["feeds", "doc", "--check", "--path", str(target)]).exit_code == 0


def test_the_feeds_cli_imports_no_heavy_stack():
    code = (
        "import sys, crm.feeds.cli; "
        "heavy = [m for m in ('pandas', 'numpy', 'airflow', 'dbt', 'psycopg') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"crm.feeds.cli imports {result.stdout.strip()} {result.stderr[-500:]}"
