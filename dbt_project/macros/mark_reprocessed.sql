{#- After a successful build, late partitions up to the run date count as reprocessed. -#}
{% macro mark_reprocessed(results) %}
    {% if execute and flags.WHICH in ('build', 'run') %}
        {% set failed = results | selectattr('status', 'in', ['error', 'fail']) | list %}
        {% if failed | length == 0 %}
            update {{ source('audit', 'reprocess_requests') }}
            set processed_at = now()
            where processed_at is null and business_date <= {{ run_date() }}
        {% endif %}
    {% endif %}
{% endmacro %}
