with source as (
    select
        txn_id,
        account_id,
        posted_at,
        value_date,
        amount,
        currency,
        direction,
        txn_type,
        channel,
        mcc,
        counterparty_bank,
        fee,
        _business_date
    from {{ source('raw', 'core_transactions') }}
),

final as (
    select
        txn_id,
        account_id,
        {{ local_to_utc('posted_at') }} as posted_at_utc,
        posted_at::date as posted_date_local,
        value_date,
        -- Signed from the customer's point of view: money in is positive.
        case when direction = 'C' then amount else -amount end as signed_amount,
        amount,
        upper(currency) as currency,
        direction,
        txn_type,
        channel,
        mcc,
        nullif(counterparty_bank, '') as counterparty_bank,
        coalesce(fee, 0) as fee,
        _business_date as business_date
    from source
)

select * from final
