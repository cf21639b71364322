{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='snapshot_date',
        on_schema_change='fail',
        post_hook="create index if not exists {{ this.name }}_snapshot_date_brin on {{ this }} using brin (snapshot_date)",
    )
}}
-- Each customer's activity over the trailing activity window ending on the snapshot date:
-- the sums and counts customer_360 reports. A daily run rolls the previous day's window
-- forward (+ the run date's totals, - the day that left the window) when that row exists
-- and no late day is being reprocessed; otherwise (first build, full refresh, a gap, late
-- data) it sums the window's daily totals. Both give the same numbers: sums and counts are
-- exact, amounts are rounded to 4 decimals (their inputs have at most 4), and a last-activity
-- date still inside the window stays the latest once the day before the window leaves it.
{% set window = var('activity_window_days') %}
{% set roll = false %}
{% if execute and is_incremental() %}
    {% set check %}
        select
            exists (select 1 from {{ this }} where snapshot_date = {{ run_date() }} - 1)
            and not exists (
                select 1 from {{ source('audit', 'reprocess_requests') }}
                where processed_at is null and business_date < {{ run_date() }}
            )
    {% endset %}
    {% set roll = run_query(check).columns[0].values()[0] %}
{% endif %}
with params as (
    select
        {{ run_date() }} as snapshot_date,
        {{ run_date() }} - {{ window - 1 }} as window_start
),

-- Only the days used (read twice when rolling, so PostgreSQL materializes this CTE: an
-- unfiltered one would copy the whole history first).
daily as (
    select * from {{ ref('fct_customer_activity_daily') }}
    {% if roll %}
        where business_date in ({{ run_date() }}, {{ run_date() }} - {{ window }})
    {% else %}
        where business_date between {{ run_date() }} - {{ window - 1 }} and {{ run_date() }}
    {% endif %}
),

{% if roll %}
    previous as (
        select * from {{ this }}
        where snapshot_date = {{ run_date() }} - 1
    ),

    entering as (
        select * from daily
        where business_date = {{ run_date() }}
    ),

    leaving as (
        select * from daily
        where business_date = {{ run_date() }} - {{ window }}
    ),

    summed as (
        select
            customer_id,
            coalesce(previous.days_in_window, 0) + (entering.customer_id is not null)::integer
            - (leaving.customer_id is not null)::integer as days_in_window,
            coalesce(previous.balance_margin_hkd, 0) + coalesce(entering.balance_margin_hkd, 0)
            - coalesce(leaving.balance_margin_hkd, 0) as balance_margin_hkd,
            coalesce(previous.txn_count, 0) + coalesce(entering.txn_count, 0)
            - coalesce(leaving.txn_count, 0) as txn_count,
            coalesce(previous.txn_amount_hkd, 0) + coalesce(entering.txn_amount_hkd, 0)
            - coalesce(leaving.txn_amount_hkd, 0) as txn_amount_hkd,
            coalesce(previous.txn_fees_hkd, 0) + coalesce(entering.txn_fees_hkd, 0)
            - coalesce(leaving.txn_fees_hkd, 0) as txn_fees_hkd,
            coalesce(previous.outflow_to_competitors_hkd, 0) + coalesce(entering.outflow_to_competitors_hkd, 0)
            - coalesce(leaving.outflow_to_competitors_hkd, 0) as outflow_to_competitors_hkd,
            case
                when entering.txn_count > 0 then entering.business_date
                when previous.last_txn_date >= (select window_start from params) then previous.last_txn_date
            end as last_txn_date,
            coalesce(previous.interactions, 0) + coalesce(entering.interactions, 0)
            - coalesce(leaving.interactions, 0) as interactions,
            coalesce(previous.branch_visits, 0) + coalesce(entering.branch_visits, 0)
            - coalesce(leaving.branch_visits, 0) as branch_visits,
            coalesce(previous.atm_events, 0) + coalesce(entering.atm_events, 0)
            - coalesce(leaving.atm_events, 0) as atm_events,
            coalesce(previous.online_sessions, 0) + coalesce(entering.online_sessions, 0)
            - coalesce(leaving.online_sessions, 0) as online_sessions,
            coalesce(previous.mobile_events, 0) + coalesce(entering.mobile_events, 0)
            - coalesce(leaving.mobile_events, 0) as mobile_events,
            coalesce(previous.calls, 0) + coalesce(entering.calls, 0)
            - coalesce(leaving.calls, 0) as calls,
            coalesce(previous.branch_wait_seconds, 0) + coalesce(entering.branch_wait_seconds, 0)
            - coalesce(leaving.branch_wait_seconds, 0) as branch_wait_seconds,
            coalesce(previous.branch_waits_timed, 0) + coalesce(entering.branch_waits_timed, 0)
            - coalesce(leaving.branch_waits_timed, 0) as branch_waits_timed,
            coalesce(previous.cost_to_serve_hkd, 0) + coalesce(entering.cost_to_serve_hkd, 0)
            - coalesce(leaving.cost_to_serve_hkd, 0) as cost_to_serve_hkd,
            case
                when entering.interactions > 0 then entering.business_date
                when previous.last_interaction_date >= (select window_start from params)
                    then previous.last_interaction_date
            end as last_interaction_date
        from previous
        full outer join entering using (customer_id)
        full outer join leaving using (customer_id)
    ),
{% else %}
    summed as (
        select
            customer_id,
            count(*) as days_in_window,
            coalesce(sum(balance_margin_hkd), 0) as balance_margin_hkd,
            coalesce(sum(txn_count), 0) as txn_count,
            coalesce(sum(txn_amount_hkd), 0) as txn_amount_hkd,
            coalesce(sum(txn_fees_hkd), 0) as txn_fees_hkd,
            coalesce(sum(outflow_to_competitors_hkd), 0) as outflow_to_competitors_hkd,
            max(business_date) filter (where txn_count > 0) as last_txn_date,
            coalesce(sum(interactions), 0) as interactions,
            coalesce(sum(branch_visits), 0) as branch_visits,
            coalesce(sum(atm_events), 0) as atm_events,
            coalesce(sum(online_sessions), 0) as online_sessions,
            coalesce(sum(mobile_events), 0) as mobile_events,
            coalesce(sum(calls), 0) as calls,
            coalesce(sum(branch_wait_seconds), 0) as branch_wait_seconds,
            coalesce(sum(branch_waits_timed), 0) as branch_waits_timed,
            coalesce(sum(cost_to_serve_hkd), 0) as cost_to_serve_hkd,
            max(business_date) filter (where interactions > 0) as last_interaction_date
        from daily
        group by customer_id
    ),
{% endif %}

final as (
    select
        params.snapshot_date,
        summed.customer_id,
        summed.days_in_window::integer as days_in_window,
        round(summed.balance_margin_hkd, 4) as balance_margin_hkd,
        summed.txn_count::bigint as txn_count,
        round(summed.txn_amount_hkd, 4) as txn_amount_hkd,
        round(summed.txn_fees_hkd, 4) as txn_fees_hkd,
        round(summed.outflow_to_competitors_hkd, 4) as outflow_to_competitors_hkd,
        summed.last_txn_date,
        summed.interactions::bigint as interactions,
        summed.branch_visits::bigint as branch_visits,
        summed.atm_events::bigint as atm_events,
        summed.online_sessions::bigint as online_sessions,
        summed.mobile_events::bigint as mobile_events,
        summed.calls::bigint as calls,
        summed.branch_wait_seconds::bigint as branch_wait_seconds,
        summed.branch_waits_timed::bigint as branch_waits_timed,
        round(summed.cost_to_serve_hkd, 4) as cost_to_serve_hkd,
        summed.last_interaction_date
    from summed
    cross join params
    -- Rolled forward, a customer whose last day in the window just left it has nothing left.
    where summed.days_in_window > 0
)

select * from final
