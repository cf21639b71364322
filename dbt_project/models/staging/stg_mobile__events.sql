with source as (
    select
        event_id,
        customer_id,
        event_ts_ms,
        event_type,
        app_version,
        os,
        _business_date
    from {{ source('raw', 'mobile_events') }}
),

final as (
    select
        event_id,
        customer_id,
        to_timestamp(event_ts_ms / 1000.0) as event_at_utc,
        {{ local_date('to_timestamp(event_ts_ms / 1000.0)') }} as event_date_local,
        event_type,
        app_version,
        os,
        _business_date as business_date
    from source
)

select * from final
