{#- Late partitions (audit.reprocess_requests) count as reprocessed once every model has
    rebuilt them. A whole-project `dbt build` / `dbt run` marks them itself (on-run-end: the
    requests raised before it started, which every model saw). A partial one (--select, as
    cosmos runs each node) must not, or the first node built would mark days that later
    models have not rebuilt yet: the crm_transform DAG notes the last request id before its
    first node and calls mark_reprocessed_requests with it after its last node. -#}
{% macro mark_reprocessed(results) %}
    {% if execute and flags.WHICH in ('build', 'run') and not invocation_args_dict.get('select') %}
        {% set failed = results | selectattr('status', 'in', ['error', 'fail']) | list %}
        {% if failed | length == 0 %}
            {{ mark_reprocessed_sql("requested_at <= '" ~ run_started_at.isoformat() ~ "'::timestamptz") }}
        {% endif %}
    {% endif %}
{% endmacro %}

{% macro mark_reprocessed_sql(seen_by_every_model) %}
    update {{ source('audit', 'reprocess_requests') }}
    set processed_at = now()
    where processed_at is null
        and business_date <= {{ run_date() }}
        and {{ seen_by_every_model }}
{% endmacro %}

{#- `dbt run-operation mark_reprocessed_requests --args '{up_to_request_id: 42}'` -#}
{% macro mark_reprocessed_requests(up_to_request_id) %}
    {% set sql %}{{ mark_reprocessed_sql('request_id <= ' ~ (up_to_request_id | int)) }}{% endset %}
    {% do run_query(sql) %}
    {% do run_query('commit') %}
    {{ log('reprocess requests up to id ' ~ (up_to_request_id | int) ~ ' marked processed', info=true) }}
{% endmacro %}
