-- Current customers for BI. Personal data is pseudonymised or masked here, and the demographics
-- BI can join are generalised to k-anonymity (var k_anonymity_k); clear text stays in raw.
-- Current state, kept per snapshot until published: config in dbt_project.yml (current_state).
{%- set k = var('k_anonymity_k', 5) %}
{#- What BI can join per customer that a person's acquaintance could know (docs/security.md):
    the demographics here (customer_360 repeats them), branch and RM (customer_360,
    customer_segments and rm_worklist take them from here). rm_id drives worklists and RM
    row security, so it is never generalised: the other columns are, within each RM's
    customers. Statuses and behaviour (balances, segments) are the bank's own, not outside
    knowledge, and are not generalised. -#}
{%- set quasi_identifiers = [
    'name_masked', 'mobile_masked', 'gender', 'age_band', 'income_band_cny', 'occupation', 'years_employed',
    'family_role', 'family_size', 'city', 'branch_id', 'onboarding_date', 'rm_id'
] %}
with customers as (
    select * from {{ ref('stg_core__customers') }}
    -- Customers of the day built: a later onboarding is not in it (a re-run of an earlier day),
    -- nor in the classes counted for k-anonymity.
    where onboarding_date <= {{ run_date() }} or onboarding_date is null
),

holdings as (
    select
        customer_id,
        products_held,
        open_accounts
    from {{ ref('int_product_holdings') }}
),

-- Generalised for everyone: bands, occupation groups, onboarding month (its first day).
generalised as (
    select
        customer_id,
        -- Family name only, fixed length (the name's length would narrow it down too).
        left(full_name, 1) || '**' as name_masked,
        -- Carrier prefix only: the last digits of a number its owner's acquaintances know
        -- would single the customer out.
        left(mobile, 3) || '********' as mobile_masked,
        gender,
        case
            when age({{ run_date() }}, birth_date) < interval '25 years' then '18-24'
            when age({{ run_date() }}, birth_date) < interval '35 years' then '25-34'
            when age({{ run_date() }}, birth_date) < interval '45 years' then '35-44'
            when age({{ run_date() }}, birth_date) < interval '55 years' then '45-54'
            when age({{ run_date() }}, birth_date) < interval '65 years' then '55-64'
            else '65+'
        end as age_band,
        case
            when annual_income_cny < 100000 then '<100k'
            when annual_income_cny < 300000 then '100k-300k'
            when annual_income_cny < 1000000 then '300k-1m'
            else '1m+'
        end as income_band_cny,
        case
            when occupation in ('engineer', 'doctor', 'it_professional', 'finance') then 'professional'
            when occupation in ('teacher', 'civil_servant') then 'public_sector'
            when occupation in ('manager', 'business_owner', 'sales') then 'business'
            when occupation in ('worker') then 'worker'
            when occupation in ('retired', 'student') then 'not_working'
            when occupation is not null then 'other'
        end as occupation,
        -- Lower bound of a 10-year band.
        (years_employed / 10) * 10 as years_employed,
        family_role,
        -- 4 = four or more.
        least(family_size, 4) as family_size,
        city,
        branch_id,
        date_trunc('month', onboarding_date)::date as onboarding_date,
        rm_id
    from customers
),

{{ k_anonymise(
    source='generalised', name='k_anonymous', key='customer_id', columns=quasi_identifiers, k=k,
    steps=[
        {'column': 'mobile_masked', 'expression': 'null'},
        {'column': 'name_masked', 'expression': 'null'},
        {'column': 'onboarding_date', 'expression': "date_trunc('year', onboarding_date)::date"},
        {'column': 'years_employed', 'expression': 'null'},
        {'column': 'family_size', 'expression': 'null'},
        {'column': 'family_role', 'expression': 'null'},
        {'column': 'occupation', 'expression': 'null'},
        {'column': 'onboarding_date', 'expression': "date_trunc('decade', onboarding_date)::date"},
        {'column': 'city', 'expression': 'null'},
        {'column': 'income_band_cny', 'expression': 'null'},
        {'column': 'age_band', 'expression': 'null'},
        {'column': 'gender', 'expression': 'null'},
        {'column': 'branch_id', 'expression': 'null'},
    ],
    fixed=['rm_id'],
    residue={'onboarding_date': 'min(onboarding_date) filter (where pooled) over (partition by rm_id)'}
) }},

final as (
    select
        {{ run_date() }} as snapshot_date,
        customers.customer_id,
        -- HMAC-SHA256 under a key only the warehouse owner reads (private.pseudonym, migration 0013).
        private.pseudonym(customers.national_id) as national_id_hash,
        k_anonymous.name_masked,
        k_anonymous.mobile_masked,
        k_anonymous.gender,
        k_anonymous.age_band,
        k_anonymous.occupation,
        k_anonymous.years_employed,
        k_anonymous.income_band_cny,
        k_anonymous.family_role,
        k_anonymous.family_size,
        k_anonymous.city,
        k_anonymous.branch_id,
        k_anonymous.onboarding_date,
        customers.core_status,
        customers.rm_id,
        customers.referred_by_customer_id,
        coalesce(holdings.products_held, 0) as products_held,
        coalesce(holdings.open_accounts, 0) as open_accounts
    from customers
    inner join k_anonymous on customers.customer_id = k_anonymous.customer_id
    left join holdings on customers.customer_id = holdings.customer_id
)

select * from final
