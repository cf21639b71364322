"""The dbt vars of ``dbt_project/dbt_project.yml``: the one place business parameters live.

Python stages that apply a business rule (the mart gate's tolerances, the CLV horizon and
discount rate) read the same vars dbt does, so a rule has one setting. (``crm.dates`` reads
``bank_timezone`` without yaml, to keep ``crm --help`` fast.)
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from crm.dates import DBT_PROJECT


@lru_cache(maxsize=1)
def dbt_vars() -> dict[str, Any]:
    import yaml

    return dict(yaml.safe_load(DBT_PROJECT.read_text(encoding="utf-8"))["vars"])
