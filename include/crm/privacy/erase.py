"""``crm privacy erase``: erase one customer on request (PIPL art. 47 / GDPR art. 17 style).

The customer, their accounts and every row or file naming them go, everywhere the platform
keeps data: raw, quarantine, the key tables, dbt's relations and snapshots, ml scores, dq
results, the landing files and everything else under the CRM home (``erase_db``,
``erase_files``). A value naming them in someone else's row (a referrer) is blanked.

Afterwards the clear id is stored nowhere: ``audit.erasures`` (who, when, why, counts) and
the block list ``audit.erased_subjects`` name the customer and their accounts only by
``private.pseudonym(id)``; the loader quarantines a later row naming one as ERASED_SUBJECT,
without its text (only the amounts and currency its control record totals). Output and logs carry counts only. Erasing again finds nothing and says so.

Order: the owner's tables (raw first, so no build can bring the customer back) with the
block list and audit row in one transaction; then each other owner's relations as that
role; then the files; then the audit row gets the final counts. Every step is idempotent,
so a failed run is repaired by running it again.
"""

from __future__ import annotations

import getpass
import logging
import re
from dataclasses import dataclass, field
from typing import Annotated

import typer

log = logging.getLogger(__name__)

OWNER = "crm_owner"


@dataclass
class ErasureReport:
    erasure_id: int
    already_erased: bool
    deleted: dict[str, int] = field(default_factory=dict)
    anonymised: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    files_left: list[str] = field(default_factory=list)

    @property
    def nothing_found(self) -> bool:
        return not (sum(self.deleted.values()) or sum(self.anonymised.values()) or self.files_changed)

    @property
    def files_changed(self) -> int:
        return sum(self.files.get(k, 0) for k in ("files_rewritten", "files_deleted"))

    def summary(self) -> str:
        if self.already_erased and self.nothing_found:
            return f"Already erased: nothing left to remove (audit row {self.erasure_id})."
        return (
            f"Erased (audit row {self.erasure_id}): {sum(self.deleted.values())} rows deleted in "
            f"{len(self.deleted)} tables, {sum(self.anonymised.values())} rows anonymised in "
            f"{len(self.anonymised)} tables; {self.files.get('files_rewritten', 0)} files rewritten, "
            f"{self.files.get('files_deleted', 0)} deleted, {self.files.get('lines_removed', 0)} lines removed."
        )


def check_request(customer_id: str, reason: str, registry) -> None:
    """Refuse an id that is not one by the registry's pattern, or a reason quoting it
    (the reason is kept in the audit row). Messages never repeat either value."""
    from crm.privacy.erase_db import ErasureError

    pattern = registry.feed("core_customers").column("customer_id").pattern
    if not pattern or not re.fullmatch(pattern, customer_id):
        raise ErasureError(f"--customer is not a customer id (registry pattern {pattern})")
    if not reason.strip():
        raise ErasureError("--reason is empty: say why (a request reference, not the customer's data)")
    if customer_id in reason:
        raise ErasureError("--reason contains the customer id: the audit keeps no clear id, give a reference")


def erase_customer(
    customer_id: str, reason: str, owner_url: str, settings=None, registry=None
) -> ErasureReport:
    """Erase ``customer_id`` (see the module); ``owner_url`` is the warehouse owner's."""
    import psycopg

    from crm.feeds import load_registry
    from crm.privacy import erase_db
    from crm.privacy.erase_files import erase_files, landing_accounts
    from crm.settings import ROLES, get_settings
    from crm.warehouse import role_url

    settings = settings or get_settings()
    registry = registry or load_registry()
    check_request(customer_id, reason, registry)
    subject_names = erase_db.subject_column_names(registry)

    with psycopg.connect(owner_url) as owner:
        tables = erase_db.list_tables(owner)
        owner.rollback()
    by_owner: dict[str, list[erase_db.Table]] = {}
    for table in tables:
        by_owner.setdefault(table.owner, []).append(table)
    strangers = sorted(t.label for o, ts in by_owner.items() if o != OWNER and o not in ROLES for t in ts)
    if strangers:
        raise erase_db.ErasureError(
            f"tables owned by a role erase cannot act as: {', '.join(strangers)}; re-own them or erase by hand"
        )
    urls = {
        role: owner_url if role == OWNER else role_url(role, settings, base_url=owner_url)
        for role in by_owner
    }

    # The accounts: wherever a role reads them next to the customer, and the landing files.
    accounts = landing_accounts(settings.landing, registry, customer_id)
    for role, owned in by_owner.items():
        with psycopg.connect(urls[role]) as conn:
            accounts |= erase_db.accounts_of(conn, owned, customer_id)
    ids = {customer_id, *accounts}

    counts = erase_db.TableCounts()
    with psycopg.connect(owner_url) as owner, owner.transaction():
        subject_hash = erase_db.pseudonym(owner, customer_id)
        already = erase_db.already_erased(owner, subject_hash)
        counts.add(erase_db.erase_tables(owner, by_owner.get(OWNER, []), ids, subject_names))
        erasure_id = erase_db.record_erasure(
            owner,
            subject_hash,
            accounts,
            reason=reason.strip(),
            os_user=getpass.getuser(),
            already=already,
        )
    for role in sorted(r for r in by_owner if r != OWNER):
        with psycopg.connect(urls[role]) as conn, conn.transaction():
            counts.add(erase_db.erase_tables(conn, by_owner[role], ids, subject_names))

    roots = {settings.home, settings.landing, settings.truth}
    files = erase_files(settings.home, settings.landing, registry, ids, subject_names, extra_roots=roots)
    with psycopg.connect(owner_url) as owner, owner.transaction():
        erase_db.finish_erasure(owner, erasure_id, counts, files.as_dict())
    report = ErasureReport(
        erasure_id, already, counts.deleted, counts.anonymised, files.as_dict(), files.left
    )
    log.info("erasure %s: %s", erasure_id, report.summary())
    return report


def erase_cmd(
    customer: Annotated[
        str, typer.Option("--customer", help="The customer id to erase (core_customers.customer_id).")
    ],
    reason: Annotated[
        str,
        typer.Option(
            "--reason", help="Why: the request's reference (kept in audit.erasures; no personal data)."
        ),
    ],
) -> None:
    """Erase one customer everywhere (raw, quarantine, marts, snapshots, scores, files) and block
    later deliveries of them; prints counts only."""
    from crm.privacy.erase_db import ErasureError
    from crm.warehouse import ensure_ready

    try:
        report = erase_customer(customer, reason, ensure_ready())
    except ErasureError as err:
        typer.echo(f"crm privacy erase: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(report.summary())
    if report.files_left:
        typer.echo(
            f"crm privacy erase: {len(report.files_left)} files still hold the id and cannot be rewritten "
            f"(databases): {', '.join(report.files_left)}",
            err=True,
        )
        raise typer.Exit(1)
