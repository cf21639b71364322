{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='snapshot_date',
        on_schema_change='fail',
        post_hook="create index if not exists {{ this.name }}_snapshot_date_brin on {{ this }} using brin (snapshot_date)",
    )
}}
-- One row per customer per snapshot date (the business day built), using only data
-- known on that day. Activity measures cover the trailing activity window.
{% set window = var('activity_window_days') %}
with params as (
    select
        {{ run_date() }} as snapshot_date,
        {{ run_date() }} - {{ window - 1 }} as window_start
),

customers as (
    select * from {{ ref('dim_customer') }}
    where snapshot_date = {{ run_date() }}
),

holdings as (
    select * from {{ ref('int_product_holdings') }}
),

-- The day's balances and the window's sums and counts (customer_activity_window).
balances as (
    select
        customer_id,
        sum(trb_hkd) filter (where business_date = (select snapshot_date from params)) as trb_hkd,
        sum(liabilities_hkd) filter (where business_date = (select snapshot_date from params)) as liabilities_hkd,
        -- TRB 30 days earlier, by the same definition (macro trb_hkd; none if the window is shorter).
        sum(trb_hkd) filter (
            where business_date = (select snapshot_date - 30 from params) and {{ window }} > 30
        ) as trb_hkd_30d_ago
    from {{ ref('fct_customer_activity_daily') }}
    where business_date in ({{ run_date() }}, {{ run_date() }} - 30)
    group by customer_id
),

activity_window as (
    select
        activity.customer_id,
        balances.trb_hkd,
        balances.liabilities_hkd,
        balances.trb_hkd_30d_ago,
        activity.balance_margin_hkd,
        activity.txn_count,
        activity.txn_amount_hkd,
        activity.txn_fees_hkd,
        activity.last_txn_date,
        activity.outflow_to_competitors_hkd,
        activity.interactions,
        activity.branch_visits,
        activity.atm_events,
        activity.online_sessions,
        activity.mobile_events,
        activity.calls,
        -- The mean of the window's timed branch waits (what avg() over the visits gives).
        activity.branch_wait_seconds::numeric / nullif(activity.branch_waits_timed, 0) as avg_branch_wait_seconds,
        activity.cost_to_serve_hkd,
        activity.last_interaction_date
    from {{ ref('customer_activity_window') }} as activity
    left join balances on activity.customer_id = balances.customer_id
    where activity.snapshot_date = {{ run_date() }}
),

complaints as (
    select
        customer_id,
        count(*) filter (
            where opened_date_local between (select window_start from params) and (select snapshot_date from params)
        ) as complaints,
        count(*) filter (where status = 'open') as open_complaints
    from {{ ref('stg_complaints__complaints') }}
    group by customer_id
),

surveys as (
    select
        customer_id,
        count(*) as surveys_answered,
        avg(overall_satisfaction) as avg_satisfaction,
        avg(likely_to_continue) as avg_likely_to_continue
    from {{ ref('stg_surveys__responses') }}
    where business_date <= (select snapshot_date from params)
    group by customer_id
),

campaigns as (
    select
        customer_id,
        sum(contact_cost_hkd) as marketing_cost_hkd,
        count(*) filter (where responded) as campaign_responses
    from {{ ref('stg_campaigns__contacts') }}
    where business_date between (select window_start from params) and (select snapshot_date from params)
    group by customer_id
),

referrals as (
    select
        referrer_customer_id as customer_id,
        count(*) as referrals_made
    from {{ ref('stg_core__referrals') }}
    where business_date <= (select snapshot_date from params)
    group by referrer_customer_id
),

churn_scores as (
    select distinct on (customer_id)
        customer_id,
        churn_probability,
        churn_reasons,
        model_version
    from {{ ref('stg_ml__churn_scores') }}
    where as_of_date <= (select snapshot_date from params)
    order by customer_id asc, as_of_date desc
),

clv_scores as (
    select distinct on (customer_id)
        customer_id,
        clv_hkd
    from {{ ref('stg_ml__clv_scores') }}
    where as_of_date <= (select snapshot_date from params)
    order by customer_id asc, as_of_date desc
),

joined as (
    select
        params.snapshot_date,
        customers.customer_id,
        customers.gender,
        customers.age_band,
        customers.income_band_cny,
        customers.occupation,
        customers.city,
        customers.branch_id,
        customers.rm_id,
        customers.core_status,
        customers.onboarding_date,
        params.snapshot_date - customers.onboarding_date as tenure_days,
        coalesce(holdings.accounts_ever, 0) as accounts_ever,
        coalesce(holdings.open_accounts, 0) as open_accounts,
        coalesce(holdings.products_held, 0) as products_held,
        coalesce(activity_window.trb_hkd, 0) as trb_hkd,
        coalesce(activity_window.liabilities_hkd, 0) as liabilities_hkd,
        activity_window.trb_hkd_30d_ago,
        coalesce(activity_window.txn_count, 0) as txn_count,
        coalesce(activity_window.txn_amount_hkd, 0) as txn_amount_hkd,
        coalesce(activity_window.outflow_to_competitors_hkd, 0) as outflow_to_competitors_hkd,
        coalesce(activity_window.interactions, 0) as interactions,
        coalesce(activity_window.branch_visits, 0) as branch_visits,
        coalesce(activity_window.atm_events, 0) as atm_events,
        coalesce(activity_window.online_sessions, 0) as online_sessions,
        coalesce(activity_window.mobile_events, 0) as mobile_events,
        coalesce(activity_window.calls, 0) as calls,
        activity_window.avg_branch_wait_seconds,
        greatest(activity_window.last_txn_date, activity_window.last_interaction_date) as last_activity_date,
        coalesce(complaints.complaints, 0) as complaints,
        coalesce(complaints.open_complaints, 0) as open_complaints,
        coalesce(surveys.surveys_answered, 0) as surveys_answered,
        surveys.avg_satisfaction,
        surveys.avg_likely_to_continue,
        coalesce(campaigns.campaign_responses, 0) as campaign_responses,
        coalesce(referrals.referrals_made, 0) as referrals_made,
        coalesce(activity_window.balance_margin_hkd, 0) as balance_margin_hkd,
        coalesce(activity_window.txn_fees_hkd, 0) as txn_fees_hkd,
        coalesce(activity_window.cost_to_serve_hkd, 0) as cost_to_serve_hkd,
        coalesce(campaigns.marketing_cost_hkd, 0) as marketing_cost_hkd,
        churn_scores.churn_probability,
        churn_scores.churn_reasons,
        churn_scores.model_version as churn_model_version,
        clv_scores.clv_hkd
    from customers
    cross join params
    left join holdings on customers.customer_id = holdings.customer_id
    left join activity_window on customers.customer_id = activity_window.customer_id
    left join complaints on customers.customer_id = complaints.customer_id
    left join surveys on customers.customer_id = surveys.customer_id
    left join campaigns on customers.customer_id = campaigns.customer_id
    left join referrals on customers.customer_id = referrals.customer_id
    left join churn_scores on customers.customer_id = churn_scores.customer_id
    left join clv_scores on customers.customer_id = clv_scores.customer_id
    where customers.onboarding_date <= params.snapshot_date
),

final as (
    select
        snapshot_date,
        customer_id,
        gender,
        age_band,
        income_band_cny,
        occupation,
        city,
        branch_id,
        rm_id,
        core_status,
        onboarding_date,
        tenure_days,
        accounts_ever,
        open_accounts,
        products_held,
        round(trb_hkd, 2) as trb_hkd,
        round(liabilities_hkd, 2) as liabilities_hkd,
        round(trb_hkd_30d_ago, 2) as trb_hkd_30d_ago,
        txn_count,
        round(txn_amount_hkd, 2) as txn_amount_hkd,
        round(outflow_to_competitors_hkd, 2) as outflow_to_competitors_hkd,
        interactions,
        branch_visits,
        atm_events,
        online_sessions,
        mobile_events,
        calls,
        round(
            (online_sessions + mobile_events)::numeric / nullif(interactions, 0), 4
        ) as digital_share,
        round(avg_branch_wait_seconds, 1) as avg_branch_wait_seconds,
        last_activity_date,
        snapshot_date - last_activity_date as recency_days,
        complaints,
        open_complaints,
        surveys_answered,
        round(avg_satisfaction, 2) as avg_satisfaction,
        round(avg_likely_to_continue, 2) as avg_likely_to_continue,
        campaign_responses,
        referrals_made,
        -- Profitability over the window: margin on balances + fees - cost to serve - marketing.
        round(balance_margin_hkd + txn_fees_hkd - cost_to_serve_hkd - marketing_cost_hkd, 2) as profit_window_hkd,
        round(
            (balance_margin_hkd + txn_fees_hkd - cost_to_serve_hkd - marketing_cost_hkd)
            * 365.0 / {{ window }}, 2
        ) as profit_annualised_hkd,
        churn_probability,
        churn_reasons,
        churn_model_version,
        clv_hkd
    from joined
)

select * from final
