{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='month_start',
        on_schema_change='fail',
        pre_hook="{{ delete_rebuilt(in_months_of('month_start', local_days_to_build(ref('interaction_local_days')))) }}",
    )
}}
-- depends_on: {{ ref('interaction_local_days') }}
-- Channel use per customer and month: touchpoints by channel, digital adoption, branch waits.
-- A daily run rebuilds only the months of the local days its business days feed, now or
-- before (interaction_local_days).
{% if is_incremental() %}
    {% set local_days = local_days_to_build(ref('interaction_local_days')) %}
{% endif %}
with interactions as (
    select * from {{ ref('fct_interactions') }}
    {% if is_incremental() %}
        where {{ in_months_of('local_date', local_days) }}
    {% endif %}
),

final as (
    select
        date_trunc('month', local_date)::date as month_start,
        customer_id,
        count(*) as interactions,
        count(*) filter (where channel = 'branch') as branch_visits,
        count(*) filter (where channel = 'atm') as atm_events,
        count(*) filter (where channel = 'online') as online_sessions,
        count(*) filter (where channel = 'mobile') as mobile_events,
        count(*) filter (where channel = 'contact_centre') as calls,
        round(avg(case when is_digital then 1.0 else 0.0 end), 4) as digital_share,
        round(avg(wait_seconds) filter (where channel = 'branch'), 1) as avg_branch_wait_seconds,
        round(avg(duration_seconds) filter (where channel = 'branch'), 1) as avg_branch_service_seconds,
        round(sum(cost_to_serve_hkd), 2) as cost_to_serve_hkd
    from interactions
    group by 1, 2
)

select * from final
