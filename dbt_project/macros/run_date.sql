{#- The business day being built: var run_date, else the last day loaded into raw. -#}
{% macro run_date() -%}
    {%- if var('run_date') -%}
        '{{ var("run_date") }}'::date
    {%- else -%}
        (select coalesce(max(business_date), current_date) from {{ source('audit', 'load_log') }} where status = 'loaded')
    {%- endif -%}
{%- endmacro %}

{#- Days an incremental model rebuilds: the run date plus days whose raw data arrived
    late (audit.reprocess_requests not yet processed). -#}
{% macro days_to_build() -%}
    (
        select {{ run_date() }} as business_date
        union
        select business_date from {{ source('audit', 'reprocess_requests') }}
        where processed_at is null and business_date <= {{ run_date() }}
    )
{%- endmacro %}

{#- Local (Asia/Shanghai) wall-clock timestamp -> timestamptz. -#}
{% macro local_to_utc(column) -%}
    ({{ column }} at time zone 'Asia/Shanghai')
{%- endmacro %}
