{#
    Write-audit-publish for BI (post-hook of every mart): a day-grained mart shows
    crm_bi_reader only the days the mart gate passed (dq.published_days, through
    dq.published_through()); a monthly mart only the months whose last day is published.
    A current-state mart (meta publish: current_state; see keep_published_snapshot) shows
    BI only the published state. The owner (dbt, the gates) sees every row; crm_ml reads
    every row (scores are built before publishing). Reference dims (branches, products,
    dates) do not depend on a day's data and have no policy.
    Re-applied on every build, so a --full-refresh keeps it.
#}
{% macro bi_sees_published_days() %}
    {%- set key = config.get('unique_key') -%}
    {%- if (config.get('meta') or {}).get('publish') == 'current_state' -%}
        {%- set visible = 'snapshot_date = (select dq.published_through())' -%}
    {%- elif key in ('business_date', 'snapshot_date', 'local_date') -%}
        {%- set visible = key ~ ' <= (select dq.published_through())' -%}
    {%- elif key == 'month_start' -%}
        {%- set visible = "month_start + interval '1 month' <= (select dq.published_through()) + 1" -%}
    {%- endif -%}
    {%- if visible is defined %}
        alter table {{ this }} enable row level security;
        drop policy if exists bi_published on {{ this }};
        create policy bi_published on {{ this }} for select to crm_bi_reader using ({{ visible }});
        drop policy if exists stage_roles on {{ this }};
        create policy stage_roles on {{ this }} for select to crm_ml using (true)
    {%- else %}
        select 1
    {%- endif %}
{% endmacro %}
