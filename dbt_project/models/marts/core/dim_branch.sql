with branches as (
    select * from {{ ref('ref_branches') }}
),

final as (
    select
        branch_id,
        branch_name,
        city,
        region,
        opened_date::date as opened_date
    from branches
)

select * from final
