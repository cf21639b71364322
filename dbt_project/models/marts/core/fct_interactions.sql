{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='business_date',
        on_schema_change='fail',
        pre_hook="{{ delete_rebuilt('business_date in ' ~ days_to_build()) }}",
        post_hook=[
            "create index if not exists {{ this.name }}_business_date_brin on {{ this }} using brin (business_date)",
            "create index if not exists {{ this.name }}_local_date_brin on {{ this }} using brin (local_date)",
        ],
    )
}}
with interactions as (
    select * from {{ ref('int_interactions_unioned') }}
    {{ business_days_filter() }}
),

final as (
    select
        interaction_id,
        business_date,
        customer_id,
        channel,
        interaction_type,
        occurred_at_utc,
        local_date,
        branch_id,
        wait_seconds,
        duration_seconds,
        cost_to_serve_hkd,
        channel in ('online', 'mobile') as is_digital
    from interactions
)

select * from final
-- In date order: the BRIN index on business_date then finds a day's rows in that day's pages
-- (rows in GROUP BY order made every daily read of one day scan most of the table).
order by business_date
