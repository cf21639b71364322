with source as (
    select
        contact_id,
        campaign_id,
        customer_id,
        channel,
        offered_product_code,
        contacted_at,
        contact_cost,
        responded,
        converted,
        _business_date
    from {{ source('raw', 'campaign_contacts') }}
),

final as (
    select
        contact_id,
        campaign_id,
        customer_id,
        channel,
        offered_product_code,
        {{ local_to_utc('contacted_at') }} as contacted_at_utc,
        contacted_at::date as contacted_date_local,
        coalesce(contact_cost, 0) as contact_cost_hkd,
        responded,
        coalesce(converted, false) as converted,
        _business_date as business_date
    from source
)

select * from final
