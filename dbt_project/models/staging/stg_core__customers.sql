-- Current state of each customer: the latest CDC row (raw keeps every delta), as of the run
-- date: so marketing_consent is the consent that holds on the day built (an opt-out's CDC row
-- counts from its business day on).
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
        marketing_consent,
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
        -- Y or N; rows loaded before the core sent consent have none: no consent.
        coalesce(marketing_consent, 'N') as marketing_consent,
        {{ local_to_utc('updated_at') }} as updated_at_utc,
        _business_date as last_changed_on
    from latest
)

select * from final
