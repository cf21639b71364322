with source as (
    select
        call_id,
        customer_id,
        direction,
        started_at,
        queue_seconds,
        handle_seconds,
        reason,
        first_contact_resolution,
        transfers,
        agent_id,
        _business_date
    from {{ source('raw', 'contact_calls') }}
),

final as (
    select
        call_id,
        customer_id,
        direction,
        {{ local_to_utc('started_at') }} as started_at_utc,
        started_at::date as call_date_local,
        queue_seconds,
        handle_seconds,
        reason,
        first_contact_resolution,
        transfers,
        agent_id,
        _business_date as business_date
    from source
)

select * from final
