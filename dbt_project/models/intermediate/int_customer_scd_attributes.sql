-- The customer attributes whose history the bank keeps (SCD2 in snapshots): segment, RM,
-- income, city and status, without personal data.
with customers as (
    select
        customer_id,
        annual_income_cny,
        city,
        branch_id,
        core_status,
        rm_id
    from {{ ref('stg_core__customers') }}
),

segments as (
    select
        customer_id,
        lifecycle_stage,
        trb_tier,
        lv_quadrant,
        abc_tier
    from {{ ref('customer_segments') }}
    where snapshot_date = {{ run_date() }}
),

final as (
    select
        customers.customer_id,
        customers.rm_id,
        customers.annual_income_cny,
        customers.city,
        customers.branch_id,
        customers.core_status,
        segments.lifecycle_stage,
        segments.trb_tier,
        segments.lv_quadrant,
        segments.abc_tier,
        -- The business day these attributes describe: the snapshot's dbt_valid_from, so the
        -- history follows business days even when days are built long after (backfills).
        {{ run_date() }}::timestamp as as_of_business_date
    from customers
    left join segments on customers.customer_id = segments.customer_id
)

select * from final
