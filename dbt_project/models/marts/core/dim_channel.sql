with costs as (
    select * from {{ ref('ref_channel_costs') }}
),

final as (
    select
        channel,
        interaction_type,
        unit_cost_hkd::numeric as unit_cost_hkd,
        channel in ('online', 'mobile') as is_digital
    from costs
)

select * from final
