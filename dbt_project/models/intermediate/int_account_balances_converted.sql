-- End-of-day balance of every account in the reporting currency, with its product economics.
with balances as (
    select * from {{ ref('stg_core__balances') }}
),

accounts as (
    select
        account_id,
        customer_id,
        product_code
    from {{ ref('stg_core__accounts') }}
),

products as (
    select
        product_code,
        product_family,
        is_asset,
        annual_margin_rate,
        monthly_fee_hkd
    from {{ ref('ref_products') }}
),

fx as (
    select
        rate_date,
        currency,
        rate_to_reporting
    from {{ ref('int_fx_rates_daily') }}
),

converted as (
    select
        balances.business_date,
        balances.balance_date,
        balances.account_id,
        accounts.customer_id,
        accounts.product_code,
        products.product_family,
        products.is_asset,
        products.annual_margin_rate,
        products.monthly_fee_hkd,
        balances.currency,
        balances.ledger_balance,
        fx.rate_to_reporting
    from balances
    inner join accounts on balances.account_id = accounts.account_id
    left join products on accounts.product_code = products.product_code
    left join fx on balances.balance_date = fx.rate_date and balances.currency = fx.currency
),

final as (
    select
        business_date,
        balance_date,
        account_id,
        customer_id,
        product_code,
        product_family,
        is_asset,
        currency,
        ledger_balance,
        rate_to_reporting,
        round(ledger_balance * rate_to_reporting, 2) as balance_hkd,
        -- Daily margin earned on the balance (absolute: loans earn on what is owed).
        round(abs(ledger_balance * rate_to_reporting) * annual_margin_rate / 365, 4) as daily_margin_hkd,
        round(monthly_fee_hkd / 30.0, 4) as daily_fee_hkd
    from converted
)

select * from final
