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
-- forward (+ the run date's totals, - the day that left the window) when that row exists,
-- has the same window length and no late day is being reprocessed; otherwise (first build,
-- full refresh, a gap, a changed activity_window_days, late data) it sums the window's
-- daily totals. Both give the same numbers: sums and counts are
-- exact, amounts are rounded to 4 decimals (their inputs have at most 4), and a last-activity
-- date still inside the window stays the latest once the day before the window leaves it.
{% set window = var('activity_window_days') %}
{#- The daily totals the window adds up (both ways of building it). -#}
{% set summed_columns = [
    'balance_margin_hkd', 'txn_count', 'txn_amount_hkd', 'txn_fees_hkd', 'outflow_to_competitors_hkd',
    'interactions', 'branch_visits', 'atm_events', 'online_sessions', 'mobile_events', 'calls',
    'branch_wait_seconds', 'branch_waits_timed', 'cost_to_serve_hkd',
] %}
{% set roll = false %}
{% if execute and is_incremental() %}
    {% set check %}
        select
            exists (
                select 1 from {{ this }}
                where snapshot_date = {{ run_date() }} - 1 and window_days = {{ window }}
            )
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
            {%- for column in summed_columns %}
                coalesce(previous.{{ column }}, 0) + coalesce(entering.{{ column }}, 0)
                - coalesce(leaving.{{ column }}, 0) as {{ column }},
            {%- endfor %}
            case
                when entering.txn_count > 0 then entering.business_date
                when previous.last_txn_date >= (select window_start from params) then previous.last_txn_date
            end as last_txn_date,
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
            {%- for column in summed_columns %}
                coalesce(sum({{ column }}), 0) as {{ column }},
            {%- endfor %}
            max(business_date) filter (where txn_count > 0) as last_txn_date,
            max(business_date) filter (where interactions > 0) as last_interaction_date
        from daily
        group by customer_id
    ),
{% endif %}

final as (
    select
        params.snapshot_date,
        summed.customer_id,
        {{ window }} as window_days,
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
