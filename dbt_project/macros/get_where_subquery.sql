{#- Data tests on incremental models test the days a daily run built. A test's where config
    says `<date column> >= __test_window_start__` (custom macros are not allowed in test
    configs, so the placeholder is filled here, as dbt's docs suggest): the days this run
    built (macro in_test_window), or no filter without a test window (a full-history run).
    A current-state mart keeps its published snapshot beside the one a run builds
    (keep_published_snapshot): `snapshot_date = __built_snapshot__` tests the run's
    snapshot, or the latest one without a run date. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- set placeholder = modules.re.search('([a-z_]+) >= __test_window_start__', where or '') -%}
    {%- if placeholder -%}
        {%- set where = where | replace(placeholder.group(0), in_test_window(placeholder.group(1))) -%}
    {%- endif -%}
    {%- if '__built_snapshot__' in (where or '') -%}
        {%- set built = run_date() if build_setting('run_date') else '(select max(snapshot_date) from ' ~ relation ~ ')' -%}
        {%- set where = where | replace('__built_snapshot__', built) -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
