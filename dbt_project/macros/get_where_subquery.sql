{#- Data tests on incremental models test the days a daily run built. A test's where config
    says `<date column> >= __test_window_start__` (custom macros are not allowed in test
    configs, so the placeholder is filled here, as dbt's docs suggest): build_setting
    test_window_start when set, else no filter (a full-history test run). -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where and '__test_window_start__' in where -%}
        {%- set window_start = build_setting('test_window_start') -%}
        {%- if window_start -%}
            {%- set where = where | replace('__test_window_start__', "'" ~ window_start ~ "'::date") -%}
        {%- else -%}
            {%- set where = modules.re.sub('[a-z_]+ >= __test_window_start__', 'true', where) -%}
        {%- endif -%}
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
