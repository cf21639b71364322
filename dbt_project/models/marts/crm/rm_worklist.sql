-- Each relationship manager's customers ranked by value at risk (value x churn probability),
-- with the reasons and a suggested next action. Before the churn model scores a customer,
-- the probability is the portfolio base rate scaled by visible warning signs
-- (thresholds and weights: the worklist_* vars).
-- Current state, kept per snapshot until published: config in dbt_project.yml (current_state).
{% set weights = var('worklist_risk_weights') %}
with customer_360 as (
    select * from {{ ref('customer_360') }}
    where snapshot_date = {{ run_date() }}
),

segments as (
    select * from {{ ref('customer_segments') }}
    where snapshot_date = {{ run_date() }}
),

offers as (
    select
        customer_id,
        product_family as top_offer
    from {{ ref('cross_sell_opportunities') }}
    where snapshot_date = {{ run_date() }} and offer_rank = 1
),

signals as (
    select
        customer_360.customer_id,
        customer_360.rm_id,
        segments.lv_quadrant,
        segments.trb_tier,
        segments.value_score,
        customer_360.trb_hkd,
        coalesce(
            customer_360.trb_hkd < {{ var('worklist_falling_balance_ratio') }} * customer_360.trb_hkd_30d_ago, false
        ) as falling_balance,
        coalesce(customer_360.recency_days, 999999) > {{ var('worklist_low_activity_days') }} as low_activity,
        customer_360.open_complaints > 0 as open_complaint,
        coalesce(customer_360.avg_satisfaction, 5) <= {{ var('worklist_low_satisfaction_max') }} as low_satisfaction,
        customer_360.outflow_to_competitors_hkd
        > {{ var('worklist_outflow_share_of_trb') }} * greatest(customer_360.trb_hkd, 1) as outflow_to_competitor,
        customer_360.churn_probability,
        customer_360.churn_reasons
    from customer_360
    inner join segments on customer_360.customer_id = segments.customer_id
    where customer_360.rm_id is not null and segments.lifecycle_stage <> 'churned'
),

scored as (
    select
        *,
        coalesce(
            churn_probability,
            least(
                {{ var('worklist_max_churn_probability') }},
                {{ var('default_churn_probability') }}
                * (
                    1
                    + {{ weights['falling_balance'] }} * falling_balance::integer
                    + {{ weights['outflow_to_competitor'] }} * outflow_to_competitor::integer
                    + {{ weights['low_activity'] }} * low_activity::integer
                    + {{ weights['open_complaint'] }} * open_complaint::integer
                    + {{ weights['low_satisfaction'] }} * low_satisfaction::integer
                )
            )
        ) as churn_risk,
        churn_probability is not null as risk_from_model
    from signals
),

final as (
    select
        {{ run_date() }} as snapshot_date,
        scored.rm_id,
        scored.customer_id,
        row_number() over (
            partition by scored.rm_id
            order by greatest(scored.value_score, 0) * scored.churn_risk desc, scored.customer_id
        ) as priority,
        scored.lv_quadrant,
        scored.trb_tier,
        round(scored.value_score, 2) as value_score,
        round(scored.churn_risk, 4) as churn_risk,
        scored.risk_from_model,
        round(greatest(scored.value_score, 0) * scored.churn_risk, 2) as value_at_risk_hkd,
        nullif(array_to_string(array_remove(array[
            case when scored.falling_balance then 'FALLING_BALANCE' end,
            case when scored.outflow_to_competitor then 'OUTFLOW_TO_COMPETITOR' end,
            case when scored.low_activity then 'LOW_ACTIVITY' end,
            case when scored.open_complaint then 'OPEN_COMPLAINT' end,
            case when scored.low_satisfaction then 'LOW_SATISFACTION' end
        ], null), ','), '') as reason_codes,
        scored.churn_reasons as model_reasons,
        case
            when scored.open_complaint then 'resolve the open complaint personally'
            when scored.outflow_to_competitor or scored.falling_balance then 'retention call: review rates and needs'
            when scored.low_satisfaction then 'service recovery meeting'
            when scored.low_activity then 're-engagement contact'
            when offers.top_offer is not null then 'offer ' || offers.top_offer
            else 'relationship review'
        end as suggested_action
    from scored
    left join offers on scored.customer_id = offers.customer_id
)

select * from final
