with source as (
    select
        balance_date,
        account_id,
        currency,
        ledger_balance,
        available_balance,
        _business_date
    from {{ source('raw', 'core_balances') }}
),

final as (
    select
        balance_date,
        account_id,
        upper(currency) as currency,
        ledger_balance,
        available_balance,
        _business_date as business_date
    from source
)

select * from final
