{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='snapshot_date',
        on_schema_change='fail',
        post_hook="create index if not exists {{ this.name }}_snapshot_date_brin on {{ this }} using brin (snapshot_date)",
    )
}}
-- Segments of every customer on each snapshot date: lifecycle, TRB tier, LV quadrant,
-- ABC pyramid and RFM cell. Rules: int_customer_segment_rules; thresholds: vars.
with rules as (
    select * from {{ ref('int_customer_segment_rules') }}
    where snapshot_date = {{ run_date() }}
),

final as (
    select
        snapshot_date,
        customer_id,
        rm_id,
        branch_id,
        lifecycle_stage,
        trb_tier,
        trb_hkd,
        value_score,
        value_from_clv,
        loyalty_score,
        lv_quadrant,
        abc_tier,
        rfm_recency,
        rfm_frequency,
        rfm_monetary,
        rfm_cell
    from rules
)

select * from final
