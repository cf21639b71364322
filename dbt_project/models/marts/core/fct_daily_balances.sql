-- Day-grained fact: config in dbt_project.yml (day_fact).
-- One row per account per business day, in the reporting currency. A daily run
-- rebuilds only the new day (and days whose raw data arrived late).
with converted as (
    select * from {{ ref('int_account_balances_converted') }}
    {{ business_days_filter() }}
),

final as (
    select
        business_date,
        account_id,
        customer_id,
        product_code,
        product_family,
        is_asset,
        currency,
        ledger_balance,
        rate_to_reporting,
        balance_hkd,
        daily_margin_hkd,
        daily_fee_hkd
    from converted
)

select * from final
