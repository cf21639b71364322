"""The GX project in ``expectations/gx``, written from the suites (``crm dq suites``).

``crm.quality.suites`` says what each gate checks; this module writes it as a GX file
context: the datasource (its connection string a ``${VAR}`` reference), one query asset per
suite whose batch is the gate's day, the suites with their severities and meta, and a
validation definition each. Reviewed and committed; results and Data Docs go outside it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from crm.feeds import Registry, load_registry
from crm.quality.suites import DATASOURCE, RESULTS_VARIABLE, URL_VARIABLE, day_query, raw_figures, suites


def write_project(root: Path, registry: Registry | None = None) -> None:
    """(Re)write the GX project under ``root`` (expectations/): datasource, assets, suites,
    validation definitions. The connection string stays a ``${...}`` reference.

    The project is written in a copy and swapped in whole at the end: a failure on the way
    (GX checks each table against the warehouse) leaves the committed project as it was.
    GX's random ids are replaced by ids derived from names (``_stable_ids``), so the diff
    to review shows only what changed."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gx-", dir=root) as scratch:
        draft = Path(scratch)
        shutil.copytree(root / "gx", draft / "gx")
        _write(draft, registry)
        _stable_ids(draft / "gx")
        old = Path(scratch) / "old"
        (root / "gx").rename(old)
        (draft / "gx").rename(root / "gx")


def _stable_ids(gx_dir: Path) -> None:
    """Give each datasource, asset, batch definition, suite, expectation and validation
    definition a UUID derived from its name (uuid5), in every file that names it."""
    import json
    import uuid

    def stable(*names: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "crm-gx:" + "/".join(names)))

    ids: dict[str, str] = {}
    config = yaml.safe_load((gx_dir / "great_expectations.yml").read_text())
    for source_name, source in (config.get("fluent_datasources") or {}).items():
        ids[source["id"]] = stable("datasource", source_name)
        for asset_name, asset in (source.get("assets") or {}).items():
            ids[asset["id"]] = stable("asset", asset_name)
            for batch_name, batch in (asset.get("batch_definitions") or {}).items():
                ids[batch["id"]] = stable("asset", asset_name, batch_name)
    for path in sorted((gx_dir / "expectations").rglob("*.json")):
        suite = json.loads(path.read_text())
        ids[suite["id"]] = stable("suite", suite["name"])
        for e in suite["expectations"]:
            ids[e["id"]] = stable("suite", suite["name"], e["type"], e.get("meta", {}).get("check", ""))
    for path in sorted((gx_dir / "validation_definitions").glob("*.json")):
        definition = json.loads(path.read_text())
        ids[definition["id"]] = stable("validation", definition["name"])
    if len(set(ids.values())) != len(ids):
        raise ValueError("two GX objects of the same name: their ids would collide")
    files = ["great_expectations.yml", "expectations/**/*.json", "validation_definitions/*.json"]
    for path in (p for pattern in files for p in gx_dir.glob(pattern)):
        text = path.read_text()
        for old, new in ids.items():
            text = text.replace(old, new)
        path.write_text(text)


def _write(root: Path, registry: Registry | None) -> None:
    from crm.settings import get_settings

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    os.environ.setdefault(RESULTS_VARIABLE, str(get_settings().home / "gx"))
    import great_expectations as gx

    registry = registry or load_registry()
    gx_dir = root / "gx"
    for generated in ("expectations", "validation_definitions", "checkpoints"):
        shutil.rmtree(gx_dir / generated, ignore_errors=True)
    config = gx_dir / "great_expectations.yml"
    if config.exists():  # assets are rewritten from scratch: ids change only when checks do
        data = yaml.safe_load(config.read_text())
        data["fluent_datasources"] = {}
        config.write_text(yaml.safe_dump(data, sort_keys=False))
    context = gx.get_context(mode="file", project_root_dir=root)
    source = context.data_sources.add_or_update_postgres(
        DATASOURCE, connection_string="${" + URL_VARIABLE + "}"
    )
    for name, (schema, table, checks) in suites(registry).items():
        asset = source.add_query_asset(name, query=day_query(schema, table))
        batch = asset.add_batch_definition_whole_table("day")
        gate, subject = name.split(".", 1)
        meta = {"gate": gate, "subject": subject}
        if name == "raw.profile":  # what each feed's profile measures, with its severity
            meta["figures"] = {f.name: [fig.meta() for fig in raw_figures(f)] for f in registry.load_order()}
        suite = context.suites.add(gx.ExpectationSuite(name=name, meta=meta))
        for check in checks:
            expectation = getattr(gx.expectations, check.expectation)(
                **check.kwargs, meta=check.meta(), severity=check.severity
            )
            suite.add_expectation(expectation)
        context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    _results_outside_the_repo(config)
    shutil.rmtree(gx_dir / "uncommitted", ignore_errors=True)


def _results_outside_the_repo(config: Path) -> None:
    """Validation results and Data Docs go to ``${CRM_GX_RESULTS_DIR}`` (var/gx), not into
    the committed project; no config-variables file either (secrets come from the
    environment only)."""
    data = yaml.safe_load(config.read_text())
    data["stores"]["validation_results_store"]["store_backend"]["base_directory"] = (
        "${" + RESULTS_VARIABLE + "}/validations/"
    )
    data["data_docs_sites"]["local_site"]["store_backend"]["base_directory"] = (
        "${" + RESULTS_VARIABLE + "}/data_docs/"
    )
    data["data_docs_sites"]["local_site"]["show_how_to_buttons"] = False
    data.pop("config_variables_file_path", None)
    data["analytics_enabled"] = False
    data["progress_bars"] = {"globally": False, "metric_calculations": False}
    config.write_text(
        "# The GX project of the quality gates. Written by `crm dq suites` from the feed registry\n"
        "# and dbt_project.yml (do not edit by hand). No connection string here: the gate runner\n"
        "# sets ${"
        + URL_VARIABLE
        + "} from its stage role; results go to ${"
        + RESULTS_VARIABLE
        + "}.\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
