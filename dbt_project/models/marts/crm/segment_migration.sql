{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='month_start',
        on_schema_change='fail',
    )
}}
-- Month-over-month movement between segments: how many customers moved from each
-- segment at the end of the previous month to each segment at the end of this month.
-- A daily run changes one snapshot (the run date's): it rebuilds that month and any later
-- ones (whose previous month it is), from the snapshots of the month before on.
{% set first_month %}date_trunc('month', {{ run_date() }})::date{% endset %}
with segments as (
    select * from {{ ref('customer_segments') }}
    {% if is_incremental() %}
        where snapshot_date >= ({{ first_month }} - interval '1 month')::date
    {% endif %}
),

month_end as (
    select distinct on (customer_id, date_trunc('month', snapshot_date))
        date_trunc('month', snapshot_date)::date as month_start,
        customer_id,
        coalesce(lv_quadrant, lifecycle_stage) as lv_quadrant,
        trb_tier,
        coalesce(abc_tier, lifecycle_stage) as abc_tier
    from segments
    order by customer_id asc, date_trunc('month', snapshot_date), snapshot_date desc
),

pairs as (
    select
        this_month.month_start,
        this_month.customer_id,
        coalesce(previous.lv_quadrant, 'new') as from_lv,
        this_month.lv_quadrant as to_lv,
        coalesce(previous.trb_tier, 'new') as from_tier,
        this_month.trb_tier as to_tier,
        coalesce(previous.abc_tier, 'new') as from_abc,
        this_month.abc_tier as to_abc
    from month_end as this_month
    left join month_end as previous
        on
            this_month.customer_id = previous.customer_id
            and previous.month_start = (this_month.month_start - interval '1 month')::date
    {% if is_incremental() %}
        where this_month.month_start >= {{ first_month }}
    {% endif %}
),

unpivoted as (
    select
        month_start,
        'lv_quadrant' as dimension,
        from_lv as from_segment,
        to_lv as to_segment
    from pairs
    union all
    select
        month_start,
        'trb_tier' as dimension,
        from_tier,
        to_tier
    from pairs
    union all
    select
        month_start,
        'abc_tier' as dimension,
        from_abc,
        to_abc
    from pairs
),

final as (
    select
        month_start,
        dimension,
        from_segment,
        to_segment,
        count(*) as customers
    from unpivoted
    group by 1, 2, 3, 4
)

select * from final
