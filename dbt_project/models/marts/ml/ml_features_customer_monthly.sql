{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='month_start',
        on_schema_change='fail',
    )
}}
-- Point-in-time features for the churn and CLV models: the last customer_360 snapshot of
-- each month. Every customer_360 snapshot uses only data known on its date, so training
-- on these rows never sees the future. A daily run adds one snapshot (the run date's): it
-- rebuilds that month and any later ones.
with snapshots as (
    select * from {{ ref('customer_360') }}
    {% if is_incremental() %}
        where snapshot_date >= date_trunc('month', {{ run_date() }})::date
    {% endif %}
),

month_end as (
    select distinct on (customer_id, date_trunc('month', snapshot_date)) *
    from snapshots
    order by customer_id asc, date_trunc('month', snapshot_date), snapshot_date desc
),

final as (
    select
        snapshot_date as as_of_date,
        date_trunc('month', snapshot_date)::date as month_start,
        customer_id,
        tenure_days,
        age_band,
        income_band_cny,
        products_held,
        trb_hkd,
        liabilities_hkd,
        case when trb_hkd_30d_ago > 0 then round(trb_hkd / trb_hkd_30d_ago, 4) end as trb_ratio_30d,
        txn_count,
        txn_amount_hkd,
        outflow_to_competitors_hkd,
        interactions,
        branch_visits,
        online_sessions,
        mobile_events,
        calls,
        digital_share,
        avg_branch_wait_seconds,
        recency_days,
        complaints,
        open_complaints,
        avg_satisfaction,
        campaign_responses,
        referrals_made,
        profit_annualised_hkd
    from month_end
)

select * from final
