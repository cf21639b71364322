{#- A value fixed for one build (run_date, test_window_start): the dbt var, else the
    environment variable CRM_<NAME> (how crm.transform and crm_transform pass them), else
    ''. Read only when nodes run, never while dbt parses: a changed --vars, or an
    environment variable read during parsing, makes dbt parse those files again on every
    daily run (1-3 s); this way the partial parse stays valid. -#}
{% macro build_setting(name) -%}
    {%- if not execute -%}
        {{- return('') -}}
    {%- endif -%}
    {{- return(var(name, none) or env_var('CRM_' ~ name | upper, '')) -}}
{%- endmacro %}

{#- The business day being built: build_setting run_date, else the last day loaded into raw. -#}
{% macro run_date() -%}
    {%- if build_setting('run_date') -%}
        '{{ build_setting("run_date") }}'::date
    {%- else -%}
        (select coalesce(max(business_date), current_date) from {{ source('audit', 'load_log') }} where status = 'loaded')
    {%- endif -%}
{%- endmacro %}

{#- Days an incremental model rebuilds: the run date plus days whose raw data arrived
    late (audit.reprocess_requests not yet processed). Rendered as a literal list so
    PostgreSQL prunes the raw partitions instead of scanning every day. -#}
{% macro days_to_build() -%}
    {%- set query -%}
        select {{ run_date() }} as business_date
        union
        select business_date from {{ source('audit', 'reprocess_requests') }}
        where processed_at is null and business_date <= {{ run_date() }}
        order by 1
    {%- endset -%}
    {{- date_list(query) -}}
{%- endmacro %}

{#- Local wall-clock timestamp (the bank's time zone, var bank_timezone) -> timestamptz. -#}
{% macro local_to_utc(column) -%}
    ({{ column }} at time zone '{{ var("bank_timezone") }}')
{%- endmacro %}

{#- A timestamptz -> the bank's local date. -#}
{% macro local_date(column) -%}
    ({{ column }} at time zone '{{ var("bank_timezone") }}')::date
{%- endmacro %}

{#- Filter of an incremental fact: the days to build on a daily run, every day up to the
    run date on the first build or a full refresh. -#}
{% macro business_days_filter(column='business_date') -%}
    {%- if is_incremental() -%}
        where {{ column }} in {{ days_to_build() }}
    {%- else -%}
        where {{ column }} <= {{ run_date() }}
    {%- endif -%}
{%- endmacro %}

{#- Local days a model grouped by local day rebuilds on a daily run: the days to build and
    the local days `model` (interaction_local_days: every pair ever seen; of `channel`, or
    all) maps those business days to. An event can fall on another local day than the
    business day of its file, and a day delivered again may no longer hold it. A literal
    list, like days_to_build(). -#}
{% macro local_days_to_build(model, channel=none) -%}
    {%- set business_days = days_to_build() -%}
    {%- set query -%}
        select local_date from {{ model }}
        where business_date in {{ business_days }}
        {%- if channel %} and channel = '{{ channel }}'{% endif %}
        union
        select business_day from unnest(array[{{ business_days[1:-1] }}]) as business_day
        order by 1
    {%- endset -%}
    {{- date_list(query) -}}
{%- endmacro %}

{#- The dates a query returns (first column) as a literal list: ('2026-01-05'::date, ...);
    (null::date) while dbt parses (no query runs then). -#}
{% macro date_list(query) -%}
    {%- if not execute -%}
        {{- return('(null::date)') -}}
    {%- endif -%}
    {%- set days = run_query(query).columns[0].values() -%}
    ({% for day in days %}'{{ day }}'::date{% if not loop.last %}, {% endif %}{% endfor %})
{%- endmacro %}

{#- Whether `column` falls in the days this run built and tests: from build_setting
    test_window_start to the run date (rows of later days, built by earlier runs of later
    days, are not this run's: re-running an older day must not test them against
    dimensions rebuilt as of that day). Without a test window: true (all history). -#}
{% macro in_test_window(column) -%}
    {%- set window_start = build_setting('test_window_start') -%}
    {%- if window_start -%}
        {{ column }} between '{{ window_start }}'::date and {{ run_date() }}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- Whether the date `column` falls in a month of `days` (a literal list, like
    days_to_build()): one date range per month, which a BRIN index on `column` can use. -#}
{% macro in_months_of(column, days) -%}
    {%- if not execute -%}
        {{- return('true') -}}
    {%- endif -%}
    {%- set query -%}
        select distinct date_trunc('month', day)::date from unnest(array[{{ days[1:-1] }}]) as day
        order by 1
    {%- endset -%}
    ({% for month in run_query(query).columns[0].values() -%}
        {{ column }} between '{{ month }}'::date and ('{{ month }}'::date + interval '1 month - 1 day')::date
        {%- if not loop.last %} or {% endif %}
    {%- endfor %})
{%- endmacro %}

{#- pre_hook of a delete+insert model: on a daily run, delete the rows of every key it
    rebuilds (`condition`). dbt's delete+insert deletes only the keys the new rows hold, so
    a key that comes back empty (a day delivered again with every row quarantined, a late
    ticket taken out again) would keep its old rows. -#}
{% macro delete_rebuilt(condition) -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ condition }}
    {%- endif -%}
{%- endmacro %}
