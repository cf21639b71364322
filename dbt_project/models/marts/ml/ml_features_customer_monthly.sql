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
--
-- Trend features: a churner's own activity fades over 30-120 days before they leave, while
-- customers who stay have quiet spells of 20-60 days; one 90-day window cannot tell the two
-- apart. So each row also compares its last 30 days with the customer's own earlier months,
-- read from the daily facts in the lookback window ending on the row's as_of_date (days_back
-- 0 = the snapshot day; nothing after it). Each row depends on its as_of_date and the facts
-- only, never on earlier rows of this table: a full refresh and the daily incremental runs
-- give the same rows. Ratios rather than levels. With fewer than min_history days before
-- the last 30 (a new customer, or the warehouse's first weeks) a ratio is 1 and the slope 0:
-- no evidence of change (an all-null column in a training fold would stop the trees);
-- null when the customer's earlier days had no activity at all (nothing to divide by).
{% set lookback = 180 %}
{% set min_history = 14 %}
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

-- The daily facts of each row's lookback window (one fact row per customer and day).
daily as (
    select
        month_end.customer_id,
        month_end.snapshot_date as as_of_date,
        month_end.snapshot_date - facts.business_date as days_back,
        facts.trb_hkd,
        facts.txn_count,
        facts.interactions,
        facts.txn_count + facts.interactions as own_events,
        facts.outflow_to_competitors_hkd
    from month_end
    inner join {{ ref('fct_customer_activity_daily') }} as facts
        on
            month_end.customer_id = facts.customer_id
            and month_end.snapshot_date - {{ lookback }} < facts.business_date
            and month_end.snapshot_date >= facts.business_date
    {% if is_incremental() %}
        where facts.business_date > date_trunc('month', {{ run_date() }})::date - {{ lookback }}
    {% endif %}
),

windows as (
    select
        customer_id,
        as_of_date,
        -- Days observed: from the customer's first fact day in the lookback (a day without
        -- a fact row inside that span had no activity).
        least(max(days_back), 29) + 1 as days_30,
        greatest(least(max(days_back), 89) - 29, 0) as days_prior_3m,
        greatest(max(days_back) - 29, 0) as days_prior_6m,
        least(max(days_back), 89) + 1 as days_3m,
        sum(txn_count) filter (where days_back < 30) as txn_30,
        sum(txn_count) filter (where days_back between 30 and 89) as txn_prior_3m,
        sum(txn_count) filter (where days_back >= 30) as txn_prior_6m,
        sum(interactions) filter (where days_back < 30) as interactions_30,
        sum(interactions) filter (where days_back between 30 and 89) as interactions_prior_3m,
        sum(interactions) filter (where days_back >= 30) as interactions_prior_6m,
        count(*) filter (where days_back < 30 and own_events > 0) as active_days_30,
        count(*) filter (where days_back >= 30 and own_events > 0) as active_days_prior_6m,
        sum(own_events) filter (where days_back < 30) as events_m1,
        sum(own_events) filter (where days_back between 30 and 59) as events_m2,
        sum(own_events) filter (where days_back between 60 and 89) as events_m3,
        avg(trb_hkd) filter (where days_back < 90) as trb_avg_3m,
        avg(trb_hkd) as trb_avg_6m,
        max(trb_hkd) as trb_peak_6m,
        sum(outflow_to_competitors_hkd) filter (where days_back < 90) as outflow_3m
    from daily
    group by customer_id, as_of_date
),

-- Transfers out in the last 90 days, and how many went to another bank.
transfers as (
    select
        month_end.customer_id,
        month_end.snapshot_date as as_of_date,
        count(*) as transfers_out_3m,
        count(*) filter (where txns.is_outflow_to_competitor) as transfers_to_competitors_3m
    from month_end
    inner join {{ ref('fct_transactions') }} as txns
        on
            month_end.customer_id = txns.customer_id
            and month_end.snapshot_date - 90 < txns.business_date
            and month_end.snapshot_date >= txns.business_date
    where
        txns.txn_type = 'transfer_out'
        {% if is_incremental() %}
            and txns.business_date > date_trunc('month', {{ run_date() }})::date - 90
        {% endif %}
    group by month_end.customer_id, month_end.snapshot_date
),

-- The customer's own calls to the contact centre in the last 90 days (known on the call's
-- business day): how many were not resolved on first contact, how many were complaints.
calls as (
    select
        month_end.customer_id,
        month_end.snapshot_date as as_of_date,
        count(*) filter (where calls.snapshot_date_back < 30) as inbound_calls_30d,
        count(*) filter (where not calls.first_contact_resolution) as unresolved_calls_90d,
        count(*) filter (where calls.reason = 'complaint') as complaint_calls_90d
    from month_end
    inner join lateral (
        select
            stg.first_contact_resolution,
            stg.reason,
            month_end.snapshot_date - stg.business_date as snapshot_date_back
        from {{ ref('stg_contact_centre__calls') }} as stg
        where
            stg.customer_id = month_end.customer_id
            and stg.direction = 'inbound'
            and stg.business_date > month_end.snapshot_date - 90
            and stg.business_date <= month_end.snapshot_date
    ) as calls on true
    group by month_end.customer_id, month_end.snapshot_date
),

final as (
    select
        month_end.snapshot_date as as_of_date,
        date_trunc('month', month_end.snapshot_date)::date as month_start,
        month_end.customer_id,
        month_end.tenure_days,
        month_end.age_band,
        month_end.income_band_cny,
        month_end.products_held,
        month_end.trb_hkd,
        month_end.liabilities_hkd,
        case
            when month_end.trb_hkd_30d_ago > 0 then round(month_end.trb_hkd / month_end.trb_hkd_30d_ago, 4)
        end as trb_ratio_30d,
        month_end.txn_count,
        month_end.txn_amount_hkd,
        month_end.outflow_to_competitors_hkd,
        month_end.interactions,
        month_end.branch_visits,
        month_end.online_sessions,
        month_end.mobile_events,
        month_end.calls,
        month_end.digital_share,
        month_end.avg_branch_wait_seconds,
        month_end.recency_days,
        month_end.complaints,
        month_end.open_complaints,
        month_end.avg_satisfaction,
        month_end.campaign_responses,
        month_end.referrals_made,
        month_end.profit_annualised_hkd,
        -- Activity: daily rate of the last 30 days / daily rate of the 2 (3m) or 5 (6m)
        -- months before them.
        {% for measure in ['txn', 'interactions'] %}
            {% for span in ['3m', '6m'] %}
                case
                    when windows.days_prior_{{ span }} < {{ min_history }} then 1
                    when windows.{{ measure }}_prior_{{ span }} > 0
                        then round(
                            (windows.{{ measure }}_30::numeric / windows.days_30)
                            / (windows.{{ measure }}_prior_{{ span }}::numeric / windows.days_prior_{{ span }}),
                            4
                        )
                end as {{ measure }}_30d_vs_{{ span }},
            {% endfor %}
        {% endfor %}
        case
            when windows.days_prior_6m < {{ min_history }} then 1
            when windows.active_days_prior_6m > 0
                then round(
                    (windows.active_days_30::numeric / windows.days_30)
                    / (windows.active_days_prior_6m::numeric / windows.days_prior_6m),
                    4
                )
        end as active_days_30d_vs_6m,
        -- Least-squares slope of own events over the last three 30-day blocks, per month, as
        -- a share of their mean: -0.5 = falling by half the usual level each month.
        case
            when windows.days_3m < 90 then 0
            when windows.events_m1 + windows.events_m2 + windows.events_m3 > 0
                then round(
                    1.5 * (windows.events_m1 - windows.events_m3)::numeric
                    / (windows.events_m1 + windows.events_m2 + windows.events_m3),
                    4
                )
        end as activity_slope_3m,
        -- Balance: today's TRB against its own recent average and 6-month peak.
        case when windows.trb_avg_3m > 0 then round(month_end.trb_hkd / windows.trb_avg_3m, 4) end as trb_vs_3m_avg,
        case when windows.trb_avg_6m > 0 then round(month_end.trb_hkd / windows.trb_avg_6m, 4) end as trb_vs_6m_avg,
        case
            when windows.trb_peak_6m > 0 then round(1 - month_end.trb_hkd / windows.trb_peak_6m, 4)
        end as trb_drawdown_6m,
        -- Money moved to other banks: 90-day outflow per HKD of the 6-month average balance,
        -- and the share of transfers out that went to another bank.
        case
            when windows.trb_avg_6m > 0 then round(coalesce(windows.outflow_3m, 0) / windows.trb_avg_6m, 4)
        end as competitor_outflow_vs_trb_3m,
        case
            when transfers.transfers_out_3m > 0
                then round(transfers.transfers_to_competitors_3m::numeric / transfers.transfers_out_3m, 4)
        end as competitor_transfer_share_3m,
        coalesce(calls.inbound_calls_30d, 0) as inbound_calls_30d,
        coalesce(calls.unresolved_calls_90d, 0) as unresolved_calls_90d,
        coalesce(calls.complaint_calls_90d, 0) as complaint_calls_90d
    from month_end
    left join windows
        on month_end.customer_id = windows.customer_id and month_end.snapshot_date = windows.as_of_date
    left join transfers
        on month_end.customer_id = transfers.customer_id and month_end.snapshot_date = transfers.as_of_date
    left join calls
        on month_end.customer_id = calls.customer_id and month_end.snapshot_date = calls.as_of_date
)

select * from final
