-- Day-grained fact: config in dbt_project.yml (day_fact, plus an index on local_date).
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
