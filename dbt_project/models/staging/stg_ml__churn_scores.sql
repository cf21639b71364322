-- Churn scores written back by the ML stage: one row per customer and as-of date (the
-- latest scoring of that date wins when a model re-scores it).
with source as (
    select
        customer_id,
        as_of_date,
        churn_probability,
        model_version,
        reason_1,
        reason_2,
        reason_3,
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
        -- The model's top three reasons, worded for relationship managers (null: not explained).
        nullif(concat_ws('; ', reason_1, reason_2, reason_3), '') as churn_reasons,
        scored_at as scored_at_utc
    from latest
)

select * from final
