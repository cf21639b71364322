"""What dbt gives a model's Jinja, for sqlfluff's jinja templater (lint only; see .sqlfluff).

Lint renders the models as dbt does while it parses the project (``execute`` is false): no
query runs, so no warehouse is needed. The project's own macros are loaded from macros/
(``load_macros_from_path``); this module supplies the dbt context they and the models use
beyond sqlfluff's dbt builtins: the project's vars from dbt_project.yml, ``env_var``,
``execute`` and dbt's ``return`` semantics for a macro called from a macro of the same file.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from jinja2 import Environment
from jinja2.runtime import Macro
from sqlfluff.core.templaters.builtins.dbt import MacroReturn

_VARS = yaml.safe_load((Path(__file__).resolve().parents[1] / "dbt_project.yml").read_text())["vars"]

# dbt while it parses: run_query and the other introspection are skipped (date_list,
# in_months_of and build_setting return their parse-time values).
execute = False


def env_var(name, default=None):
    """The environment variable, else ``default``, as dbt's ``env_var()``."""
    return os.environ.get(name, default)


def var(name, default=None):
    """The project's var (dbt_project.yml; Jinja in it rendered), else ``default``, as dbt's ``var()``."""
    value = _VARS.get(name, default)
    if isinstance(value, str) and "{{" in value:
        return Environment().from_string(value).render(env_var=env_var)
    return value


# sqlfluff catches ``return(...)`` (its MacroReturn) only around a macro called from a
# model; a macro calling another macro of its own file (run_date -> build_setting) would
# let it escape to the outer macro. dbt catches it around every macro call; do the same.
_invoke = Macro._invoke


def _invoke_catching_return(self, arguments, autoescape):
    try:
        return _invoke(self, arguments, autoescape)
    except MacroReturn as returned:
        return returned.value


Macro._invoke = _invoke_catching_return
