"""The feed registry is internally consistent: every rule it states can be enforced."""

from __future__ import annotations

import re

import pytest

from crm.feeds import load_registry

REG = load_registry()
FEEDS = list(REG.feeds.values())


@pytest.mark.parametrize("feed", FEEDS, ids=lambda f: f.name)
def test_references_point_at_a_declared_key_of_an_upstream_feed(feed):
    for col in feed.columns:
        if col.reference is None:
            continue
        target_feed, target_col = col.reference
        target = REG.feed(target_feed)
        assert target_col in target.key, f"{feed.name}.{col.name} references a non-key column"
        assert target_feed in feed.depends_on, f"{feed.name} must load after {target_feed}"


@pytest.mark.parametrize("feed", FEEDS, ids=lambda f: f.name)
def test_keys_are_required_and_patterns_compile(feed):
    for key in feed.key:
        assert feed.column(key).required, f"{feed.name}.{key} is a key but not required"
    for col in feed.columns:
        if col.pattern:
            re.compile(col.pattern)
        if col.min is not None and col.max is not None:
            assert col.min < col.max


def test_load_order_puts_dependencies_first():
    order = [f.name for f in REG.load_order()]
    for feed in FEEDS:
        for dep in feed.depends_on:
            assert order.index(dep) < order.index(feed.name)


def test_pii_columns_are_declared_for_the_customer_master():
    assert set(REG.feed("core_customers").pii) == {"national_id", "full_name", "mobile", "email", "address"}


def test_every_asset_uri_is_unique():
    uris = [f.asset_uri for f in FEEDS]
    assert len(set(uris)) == len(uris)
