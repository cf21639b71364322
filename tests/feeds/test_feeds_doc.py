"""feeds.md documents every feed and column of the registry."""

from crm.feeds import load_registry
from crm.feeds.registry import REGISTRY_PATH


def test_feeds_md_lists_every_feed_and_column():
    doc = REGISTRY_PATH.with_name("feeds.md").read_text(encoding="utf-8")
    for feed in load_registry().load_order():
        assert f"### `{feed.name}` — `{feed.file}`" in doc
        for col in feed.columns:
            assert f"| `{col.name}` | {col.type} |" in doc, f"{feed.name}.{col.name} undocumented"
