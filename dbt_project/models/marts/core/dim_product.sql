with products as (
    select * from {{ ref('ref_products') }}
),

final as (
    select
        product_code,
        product_name,
        product_family,
        is_asset,
        annual_margin_rate::numeric as annual_margin_rate,
        monthly_fee_hkd::numeric as monthly_fee_hkd
    from products
)

select * from final
