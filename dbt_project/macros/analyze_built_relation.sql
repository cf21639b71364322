{#- Fresh planner statistics for a mart just built (the marts' post-hook).

    A daily run appends a day the old statistics have never seen; a join on it estimated
    at one row runs as nested loops over every customer. A table, a first build or a full
    refresh is analyzed whole. A daily run of an incremental mart analyzes only its date
    key (unique_key) from a small sample: enough for the planner to see the new day and
    the new row count (a whole-table ANALYZE of fct_daily_balances costs 0.3 s at 20,000
    customers, this one 15 ms). The other columns keep their statistics, whose
    distributions a day barely moves; autovacuum refreshes them as the table grows. -#}
{% macro analyze_built_relation() -%}
    {%- set key = config.get('unique_key') -%}
    {%- if execute and key is string and is_incremental() and _has_statistics(this, key) -%}
        set local default_statistics_target = 10;
        analyze {{ this }} ({{ adapter.quote(key) }})
    {%- else -%}
        analyze {{ this }}
    {%- endif -%}
{%- endmacro %}

{#- Whether columns of `relation` other than `key` have planner statistics (false right
    after the table was created). -#}
{% macro _has_statistics(relation, key) -%}
    {%- set query -%}
        select exists (
            select from pg_stats
            where schemaname = '{{ relation.schema }}' and tablename = '{{ relation.identifier }}'
                and attname <> '{{ key }}'
        )
    {%- endset -%}
    {{- return(run_query(query).columns[0].values()[0]) -}}
{%- endmacro %}
