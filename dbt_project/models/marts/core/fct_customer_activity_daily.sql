-- Day-grained fact: config in dbt_project.yml (day_fact).
-- One row per customer per business day with a balance, transaction or interaction: the
-- day's sums and counts. customer_360 adds these up over its trailing window (about one
-- row per customer and day instead of every balance, transaction and interaction). Built
-- like the facts it sums: a daily run rebuilds only the days they rebuilt.
with daily_balances as (
    select * from {{ ref('fct_daily_balances') }}
    {{ business_days_filter() }}
),

transactions as (
    select * from {{ ref('fct_transactions') }}
    {{ business_days_filter() }}
),

interactions as (
    select * from {{ ref('fct_interactions') }}
    {{ business_days_filter() }}
),

balance_totals as (
    select
        business_date,
        customer_id,
        {{ trb_hkd('balance_hkd', 'is_asset') }} as trb_hkd,
        -sum(balance_hkd) filter (where not is_asset and balance_hkd < 0) as liabilities_hkd,
        sum(balance_hkd) filter (where is_asset) as asset_balance_hkd,
        sum(daily_margin_hkd + daily_fee_hkd) as balance_margin_hkd
    from daily_balances
    where customer_id is not null
    group by business_date, customer_id
),

transaction_totals as (
    select
        business_date,
        customer_id,
        count(*)::integer as txn_count,
        sum(amount_hkd) as txn_amount_hkd,
        sum(fee_hkd) as txn_fees_hkd,
        sum(amount_hkd) filter (where is_outflow_to_competitor) as outflow_to_competitors_hkd
    from transactions
    where customer_id is not null
    group by business_date, customer_id
),

interaction_totals as (
    select
        business_date,
        customer_id,
        count(*)::integer as interactions,
        count(*) filter (where channel = 'branch')::integer as branch_visits,
        count(*) filter (where channel = 'atm')::integer as atm_events,
        count(*) filter (where channel = 'online')::integer as online_sessions,
        count(*) filter (where channel = 'mobile')::integer as mobile_events,
        count(*) filter (where channel = 'contact_centre')::integer as calls,
        sum(wait_seconds) filter (where channel = 'branch') as branch_wait_seconds,
        count(wait_seconds) filter (where channel = 'branch')::integer as branch_waits_timed,
        sum(cost_to_serve_hkd) as cost_to_serve_hkd
    from interactions
    where customer_id is not null
    group by business_date, customer_id
),

final as (
    select
        business_date,
        customer_id,
        balance_totals.trb_hkd,
        balance_totals.liabilities_hkd,
        balance_totals.asset_balance_hkd,
        balance_totals.balance_margin_hkd,
        coalesce(transaction_totals.txn_count, 0) as txn_count,
        transaction_totals.txn_amount_hkd,
        transaction_totals.txn_fees_hkd,
        transaction_totals.outflow_to_competitors_hkd,
        coalesce(interaction_totals.interactions, 0) as interactions,
        coalesce(interaction_totals.branch_visits, 0) as branch_visits,
        coalesce(interaction_totals.atm_events, 0) as atm_events,
        coalesce(interaction_totals.online_sessions, 0) as online_sessions,
        coalesce(interaction_totals.mobile_events, 0) as mobile_events,
        coalesce(interaction_totals.calls, 0) as calls,
        interaction_totals.branch_wait_seconds,
        coalesce(interaction_totals.branch_waits_timed, 0) as branch_waits_timed,
        interaction_totals.cost_to_serve_hkd
    from balance_totals
    full outer join transaction_totals using (business_date, customer_id)
    full outer join interaction_totals using (business_date, customer_id)
)

select * from final
-- In date order: the BRIN index on business_date then finds a day's rows in that day's pages
-- (rows in GROUP BY order made every daily read of one day scan most of the table).
order by business_date
