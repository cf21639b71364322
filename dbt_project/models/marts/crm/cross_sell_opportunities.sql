-- Products a customer lacks that similar customers (same LV quadrant and TRB tier) hold,
-- with the adoption rate among peers and the margin a holder of that product earns.
-- Only customers with marketing consent (Y) on the day built get offers (PIPL): an opt-out
-- holds from its business day; peers without consent still count as peers.
-- Current state, kept per snapshot until published: config in dbt_project.yml (current_state).
{% set min_adoption = var('cross_sell_min_peer_adoption') %}
with segments as (
    select * from {{ ref('customer_segments') }}
    where snapshot_date = {{ run_date() }} and lv_quadrant is not null
),

consenting as (
    select customer_id
    from {{ ref('stg_core__customers') }}
    where marketing_consent = 'Y'
),

holdings as (
    select
        customer_id,
        unnest(product_families) as product_family
    from {{ ref('int_product_holdings') }}
    where product_families is not null
),

product_margin as (
    select
        product_family,
        avg(daily_margin_hkd + daily_fee_hkd) * 365 as annual_margin_per_account_hkd
    from {{ ref('fct_daily_balances') }}
    where business_date = {{ run_date() }}
    group by product_family
),

peer_groups as (
    select
        lv_quadrant,
        trb_tier,
        count(*) as peers
    from segments
    group by 1, 2
),

peer_holders as (
    select
        segments.lv_quadrant,
        segments.trb_tier,
        holdings.product_family,
        count(distinct holdings.customer_id) as holders
    from segments
    inner join holdings on segments.customer_id = holdings.customer_id
    group by 1, 2, 3
),

-- Share of the peer group (same LV quadrant and TRB tier) holding each product family.
peer_adoption as (
    select
        peer_holders.lv_quadrant,
        peer_holders.trb_tier,
        peer_holders.product_family,
        peer_holders.holders::numeric / peer_groups.peers as adoption_rate
    from peer_holders
    inner join peer_groups
        on peer_holders.lv_quadrant = peer_groups.lv_quadrant and peer_holders.trb_tier = peer_groups.trb_tier
),

candidates as (
    select
        segments.snapshot_date,
        segments.customer_id,
        segments.rm_id,
        segments.lv_quadrant,
        segments.trb_tier,
        peer_adoption.product_family,
        peer_adoption.adoption_rate,
        product_margin.annual_margin_per_account_hkd
    from segments
    inner join consenting on segments.customer_id = consenting.customer_id
    inner join peer_adoption
        on segments.lv_quadrant = peer_adoption.lv_quadrant and segments.trb_tier = peer_adoption.trb_tier
    left join holdings
        on segments.customer_id = holdings.customer_id and peer_adoption.product_family = holdings.product_family
    left join product_margin on peer_adoption.product_family = product_margin.product_family
    where holdings.customer_id is null and peer_adoption.adoption_rate >= {{ min_adoption }}
),

final as (
    select
        snapshot_date,
        customer_id,
        rm_id,
        lv_quadrant,
        trb_tier,
        product_family,
        round(adoption_rate, 4) as peer_adoption_rate,
        round(coalesce(annual_margin_per_account_hkd, 0) * adoption_rate, 2) as expected_annual_margin_hkd,
        row_number() over (
            partition by customer_id
            order by coalesce(annual_margin_per_account_hkd, 0) * adoption_rate desc, product_family
        ) as offer_rank
    from candidates
)

select * from final
