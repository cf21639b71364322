-- Day-grained fact: config in dbt_project.yml (day_fact).
with transactions as (
    select * from {{ ref('stg_core__transactions') }}
    {{ business_days_filter() }}
),

accounts as (
    select
        account_id,
        customer_id,
        product_code
    from {{ ref('stg_core__accounts') }}
),

-- The business day's fixing in the reporting currency (carried forward over a missing
-- file). No silent 1:1 fallback: a missing rate leaves amount_hkd null and fails its test.
fx as (
    select
        rate_date,
        currency,
        rate_to_reporting
    from {{ ref('int_fx_rates_daily') }}
),

final as (
    select
        transactions.txn_id,
        transactions.business_date,
        transactions.account_id,
        accounts.customer_id,
        accounts.product_code,
        transactions.posted_at_utc,
        transactions.posted_date_local,
        transactions.txn_type,
        transactions.channel,
        transactions.direction,
        transactions.currency,
        transactions.amount,
        round(transactions.amount * fx.rate_to_reporting, 2) as amount_hkd,
        round(transactions.signed_amount * fx.rate_to_reporting, 2) as signed_amount_hkd,
        round(transactions.fee * fx.rate_to_reporting, 2) as fee_hkd,
        transactions.mcc,
        transactions.counterparty_bank,
        -- Money leaving for another bank: the silent-attrition signal.
        (transactions.txn_type = 'transfer_out' and transactions.counterparty_bank is not null)
            as is_outflow_to_competitor
    from transactions
    left join accounts on transactions.account_id = accounts.account_id
    left join fx
        on transactions.business_date = fx.rate_date and transactions.currency = fx.currency
)

select * from final
