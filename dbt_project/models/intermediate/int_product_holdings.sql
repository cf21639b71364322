-- What each customer holds today: open accounts by product family.
with accounts as (
    select * from {{ ref('stg_core__accounts') }}
),

products as (
    select
        product_code,
        product_family
    from {{ ref('ref_products') }}
),

final as (
    select
        accounts.customer_id,
        count(*) as accounts_ever,
        count(*) filter (where accounts.account_status <> 'closed') as open_accounts,
        count(distinct products.product_family) filter (
            where accounts.account_status <> 'closed'
        ) as products_held,
        array_agg(distinct products.product_family order by products.product_family) filter (
            where accounts.account_status <> 'closed'
        ) as product_families,
        min(accounts.open_date) as first_account_opened_on,
        max(accounts.close_date) as last_account_closed_on
    from accounts
    left join products on accounts.product_code = products.product_code
    group by accounts.customer_id
)

select * from final
