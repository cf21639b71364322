-- Churn scores written back by the ML stage: one row per customer and as-of date (the
-- latest scoring of that date wins when a model re-scores it).
with source as (
    select
        customer_id,
        as_of_date,
        churn_probability,
        model_version,
        scored_at
    from {{ source('ml', 'churn_scores') }}
),

latest as (
    select distinct on (customer_id, as_of_date) *
    from source
    order by customer_id asc, as_of_date asc, scored_at desc
),

final as (
    select
        customer_id,
        as_of_date,
        churn_probability,
        model_version,
        scored_at as scored_at_utc
    from latest
)

select * from final
