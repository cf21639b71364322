with source as (
    select
        referral_id,
        referrer_customer_id,
        referred_customer_id,
        referred_at,
        status,
        _business_date
    from {{ source('raw', 'referrals') }}
),

final as (
    select
        referral_id,
        referrer_customer_id,
        nullif(referred_customer_id, '') as referred_customer_id,
        {{ local_to_utc('referred_at') }} as referred_at_utc,
        referred_at::date as referred_date_local,
        status,
        _business_date as business_date
    from source
)

select * from final
