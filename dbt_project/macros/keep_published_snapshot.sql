{#- Write-audit-publish for a current-state mart (dim_customer, cross_sell_opportunities,
    rm_worklist, service_quality: one state, rebuilt every day). Such a mart is incremental
    on snapshot_date and keeps two states: the one BI was last shown (the published day,
    dq.published_through()) and the one this run built. crm_bi_reader sees only the
    published state (bi_sees_published_days, meta publish: current_state), so a day whose
    mart gate fails leaves what BI reads exactly as it was, while the owner inspects the
    new state. Post-hook: drop every older state (and rows from before snapshots existed).
    Cost: one delete of the superseded state, no copy. -#}
{% macro keep_published_snapshot() %}
    delete from {{ this }}
    where snapshot_date is null
        or snapshot_date < least(coalesce((select dq.published_through()), {{ run_date() }}), {{ run_date() }})
{% endmacro %}
