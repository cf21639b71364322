with source as (
    select
        event_id,
        terminal_id,
        branch_id,
        event_time_utc,
        customer_id,
        event_type,
        amount_minor,
        currency,
        failure_code,
        _business_date
    from {{ source('raw', 'atm_events') }}
),

final as (
    select
        event_id,
        terminal_id,
        branch_id,
        event_time_utc as event_at_utc,
        {{ local_date('event_time_utc') }} as event_date_local,
        customer_id,
        lower(event_type) as event_type,
        amount_minor / 100.0 as amount,
        upper(currency) as currency,
        nullif(failure_code, '') as failure_code,
        _business_date as business_date
    from source
)

select * from final
