-- Current customers for BI. Personal data is hashed or masked here; clear text stays in raw.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='snapshot_date',
        on_schema_change='append_new_columns',
        meta={'publish': 'current_state'},
        post_hook=["{{ keep_published_snapshot() }}"]
    )
}}
with customers as (
    select * from {{ ref('stg_core__customers') }}
),

holdings as (
    select
        customer_id,
        products_held,
        open_accounts
    from {{ ref('int_product_holdings') }}
),

final as (
    select
        {{ run_date() }} as snapshot_date,
        customers.customer_id,
        -- The salt stays in the warehouse (crm migrate writes it): no SQL text carries it.
        encode(sha256(convert_to((select private.pii_salt()) || customers.national_id, 'UTF8')), 'hex')
            as national_id_hash,
        left(customers.full_name, 1) || repeat('*', greatest(char_length(customers.full_name) - 1, 1))
            as name_masked,
        left(customers.mobile, 3) || '****' || right(customers.mobile, 4) as mobile_masked,
        customers.gender,
        case
            when age({{ run_date() }}, customers.birth_date) < interval '25 years' then '18-24'
            when age({{ run_date() }}, customers.birth_date) < interval '35 years' then '25-34'
            when age({{ run_date() }}, customers.birth_date) < interval '45 years' then '35-44'
            when age({{ run_date() }}, customers.birth_date) < interval '55 years' then '45-54'
            when age({{ run_date() }}, customers.birth_date) < interval '65 years' then '55-64'
            else '65+'
        end as age_band,
        customers.occupation,
        customers.years_employed,
        case
            when customers.annual_income_cny < 100000 then '<100k'
            when customers.annual_income_cny < 300000 then '100k-300k'
            when customers.annual_income_cny < 1000000 then '300k-1m'
            else '1m+'
        end as income_band_cny,
        customers.family_role,
        customers.family_size,
        customers.city,
        customers.branch_id,
        customers.onboarding_date,
        customers.core_status,
        customers.rm_id,
        customers.referred_by_customer_id,
        coalesce(holdings.products_held, 0) as products_held,
        coalesce(holdings.open_accounts, 0) as open_accounts
    from customers
    left join holdings on customers.customer_id = holdings.customer_id
)

select * from final
