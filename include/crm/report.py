"""Short, human summaries of what the warehouse holds."""

from __future__ import annotations

from crm.settings import Settings


def warehouse_summary(settings: Settings | None = None) -> str:
    from crm.warehouse import connect

    with connect(settings=settings) as conn:
        tables = conn.execute(
            """
            select n.nspname, c.relname, c.relkind, coalesce(s.n_live_tup, 0)
            from pg_class c
            join pg_namespace n on n.oid = c.relnamespace
            left join pg_stat_user_tables s on s.relid = c.oid
            where n.nspname in ('raw', 'quarantine', 'audit', 'staging', 'intermediate', 'marts', 'ml', 'dq')
              and c.relkind in ('r', 'p', 'v', 'm') and not c.relispartition
            order by 1, 2
            """
        ).fetchall()
        loads = conn.execute(
            "select count(*) filter (where status = 'loaded'), coalesce(sum(rows_loaded), 0),"
            " coalesce(sum(rows_quarantined), 0), count(*) filter (where status in ('refused', 'failed'))"
            " from audit.load_log where status in ('loaded', 'refused', 'failed')"
        ).fetchone()
    by_schema: dict[str, list[str]] = {}
    for schema, name, kind, _ in tables:
        by_schema.setdefault(schema, []).append(name + (" (view)" if kind == "v" else ""))
    lines = ["warehouse holds:"]
    for schema, names in by_schema.items():
        shown = ", ".join(names[:8]) + (f", ... (+{len(names) - 8})" if len(names) > 8 else "")
        lines.append(f"  {schema:<13} {len(names):>3} tables/views: {shown}")
    lines.append(
        f"  loads: {loads[0]} files loaded, {loads[1]} rows in raw, {loads[2]} rows quarantined, "
        f"{loads[3]} files refused/failed"
    )
    return "\n".join(lines)
