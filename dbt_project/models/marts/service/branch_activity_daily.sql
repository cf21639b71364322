{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='local_date',
        on_schema_change='fail',
        pre_hook="{{ delete_rebuilt('local_date in ' ~ local_days_to_build(ref('interaction_local_days'), 'branch')) }}",
    )
}}
-- depends_on: {{ ref('interaction_local_days') }}
-- Branch counters per day: visits, queue waits and service times. A daily run rebuilds
-- only the local days of the branch visits in the business days it builds, now or before.
with visits as (
    select * from {{ ref('fct_interactions') }}
    where
        channel = 'branch'
        {% if is_incremental() %}
            and local_date in {{ local_days_to_build(ref('interaction_local_days'), 'branch') }}
        {% endif %}
),

final as (
    select
        local_date,
        branch_id,
        count(*) as visits,
        count(distinct customer_id) as customers,
        round(avg(wait_seconds), 1) as avg_wait_seconds,
        percentile_cont(0.9) within group (order by wait_seconds) as p90_wait_seconds,
        round(avg(duration_seconds), 1) as avg_service_seconds,
        round(sum(cost_to_serve_hkd), 2) as cost_to_serve_hkd
    from visits
    group by 1, 2
)

select * from final
