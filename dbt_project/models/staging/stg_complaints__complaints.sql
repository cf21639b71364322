-- Current state of each complaint case (files carry every opened or updated case).
with source as (
    select
        complaint_id,
        customer_id,
        opened_at,
        channel,
        category,
        severity,
        status,
        resolved_at,
        first_contact_resolution,
        _business_date,
        _line_number
    from {{ source('raw', 'complaints') }}
    where _business_date <= {{ run_date() }}
),

latest as (
    select distinct on (complaint_id) *
    from source
    order by complaint_id asc, _business_date desc, _line_number desc
),

final as (
    select
        complaint_id,
        customer_id,
        {{ local_to_utc('opened_at') }} as opened_at_utc,
        opened_at::date as opened_date_local,
        channel,
        category,
        severity,
        status,
        {{ local_to_utc('resolved_at') }} as resolved_at_utc,
        extract(epoch from resolved_at - opened_at) / 3600.0 as hours_to_resolve,
        coalesce(first_contact_resolution, false) as first_contact_resolution,
        _business_date as last_updated_on
    from latest
)

select * from final
