with source as (
    select
        ticket_id,
        branch_id,
        customer_id,
        ticket_time,
        called_time,
        completed_time,
        wait_seconds,
        service_seconds,
        service_type,
        staff_id,
        remark,
        _business_date
    from {{ source('raw', 'branch_visits') }}
),

final as (
    select
        ticket_id,
        branch_id,
        customer_id,
        {{ local_to_utc('ticket_time') }} as ticket_at_utc,
        ticket_time::date as visit_date_local,
        wait_seconds,
        service_seconds,
        service_type,
        staff_id,
        _business_date as business_date
    from source
)

select * from final
