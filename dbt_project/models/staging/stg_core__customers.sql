-- Current state of each customer: the latest CDC row (raw keeps every delta).
with source as (
    select
        customer_id,
        change_type,
        national_id,
        full_name,
        mobile,
        email,
        address,
        gender,
        birth_date,
        occupation,
        years_employed,
        annual_income_cny,
        family_role,
        family_size,
        city,
        home_branch_id,
        onboarding_date,
        status,
        rm_id,
        referred_by,
        updated_at,
        _business_date,
        _line_number
    from {{ source('raw', 'core_customers') }}
    where _business_date <= {{ run_date() }}
),

latest as (
    select distinct on (customer_id) *
    from source
    order by customer_id asc, _business_date desc, updated_at desc, _line_number desc
),

final as (
    select
        customer_id,
        national_id,
        full_name,
        mobile,
        email,
        address,
        gender,
        birth_date,
        occupation,
        years_employed,
        annual_income_cny,
        family_role,
        family_size,
        city,
        home_branch_id as branch_id,
        onboarding_date,
        status as core_status,
        rm_id,
        referred_by as referred_by_customer_id,
        {{ local_to_utc('updated_at') }} as updated_at_utc,
        _business_date as last_changed_on
    from latest
)

select * from final
