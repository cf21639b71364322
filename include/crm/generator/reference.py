"""Reference data shared by the generator and dbt: the seeds in ``dbt_project/seeds``."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from crm.settings import REPO_ROOT

SEEDS = REPO_ROOT / "dbt_project" / "seeds"


def _rows(seeds: Path, name: str) -> list[dict[str, str]]:
    with open(seeds / name, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@dataclass(frozen=True)
class Reference:
    branches: list[dict[str, str]]
    products: list[dict[str, str]]
    channel_costs: list[dict[str, str]]
    campaigns: list[dict[str, str]]

    @property
    def branch_ids(self) -> list[str]:
        return [b["branch_id"] for b in self.branches]

    @property
    def product_codes(self) -> list[str]:
        return [p["product_code"] for p in self.products]


@lru_cache(maxsize=1)
def load_reference(seeds: Path = SEEDS) -> Reference:
    return Reference(
        branches=_rows(seeds, "ref_branches.csv"),
        products=_rows(seeds, "ref_products.csv"),
        channel_costs=_rows(seeds, "ref_channel_costs.csv"),
        campaigns=_rows(seeds, "ref_campaigns.csv"),
    )
