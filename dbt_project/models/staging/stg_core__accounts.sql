-- Current state of each account: the latest CDC row.
with source as (
    select
        account_id,
        change_type,
        customer_id,
        product_code,
        currency,
        open_date,
        close_date,
        status,
        credit_limit,
        updated_at,
        _business_date,
        _line_number
    from {{ source('raw', 'core_accounts') }}
    where _business_date <= {{ run_date() }}
),

latest as (
    select distinct on (account_id) *
    from source
    order by account_id asc, _business_date desc, updated_at desc, _line_number desc
),

final as (
    select
        account_id,
        customer_id,
        product_code,
        upper(currency) as currency,
        open_date,
        close_date,
        status as account_status,
        credit_limit,
        {{ local_to_utc('updated_at') }} as updated_at_utc
    from latest
)

select * from final
