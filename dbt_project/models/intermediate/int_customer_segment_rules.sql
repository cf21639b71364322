-- The bank's segmentation rules (DOMAIN.md), applied to each customer_360 snapshot.
-- Every threshold is a var in dbt_project.yml.
with customer_360 as (
    select * from {{ ref('customer_360') }}
),

lifecycle as (
    select
        *,
        case
            when accounts_ever = 0 then 'prospect'
            when open_accounts = 0 or core_status = 'closed' then 'churned'
            when
                core_status = 'dormant'
                or coalesce(recency_days, tenure_days) > {{ var('inactive_after_days') }} then 'dormant'
            when tenure_days < {{ var('new_customer_days') }} then 'new'
            else 'active'
        end as lifecycle_stage,
        -- Value: lifetime value once the model scores the customer, profitability before.
        coalesce(clv_hkd, profit_annualised_hkd) as value_score
    from customer_360
),

tiers as (
    select
        *,
        case
            when accounts_ever = 0 then 'prospect'
            when lifecycle_stage = 'churned' then 'former'
            when lifecycle_stage = 'dormant' then 'inactive'
            when trb_hkd >= {{ var('trb_premier_threshold_hkd') }} then 'Premier'
            when trb_hkd >= {{ var('trb_advance_threshold_hkd') }} then 'Advance'
            else 'Personal'
        end as trb_tier,
        lifecycle_stage not in ('prospect', 'churned') as is_segmented
    from lifecycle
),

ranked as (
    select
        *,
        count(*) filter (where is_segmented) over (partition by snapshot_date) as segmented_customers,
        case when is_segmented then row_number() over (
            partition by snapshot_date, is_segmented order by value_score desc, customer_id asc
        ) end as value_rank,
        -- Loyalty = frequency of use + products held + advocacy (referrals, feedback).
        case
            when is_segmented then
                {{ var('loyalty_weight_frequency') }} * percent_rank()
                    over (
                        partition by snapshot_date, is_segmented order by txn_count + interactions
                    )
                + {{ var('loyalty_weight_products') }} * percent_rank()
                    over (
                        partition by snapshot_date, is_segmented order by products_held
                    )
                + {{ var('loyalty_weight_advocacy') }} * percent_rank() over (
                    partition by snapshot_date, is_segmented
                    order by referrals_made + surveys_answered + campaign_responses
                )
        end as loyalty_score
    from tiers
),

loyalty_ranked as (
    select
        *,
        case when is_segmented then row_number() over (
            partition by snapshot_date, is_segmented order by loyalty_score desc, customer_id asc
        ) end as loyalty_rank,
        case when is_segmented then 6 - ntile(5) over (
            partition by snapshot_date, is_segmented order by coalesce(recency_days, 100000), customer_id
        ) end as rfm_recency,
        case when is_segmented then ntile(5) over (
            partition by snapshot_date, is_segmented order by txn_count, customer_id
        ) end as rfm_frequency,
        case when is_segmented then ntile(5) over (
            partition by snapshot_date, is_segmented order by txn_amount_hkd, customer_id
        ) end as rfm_monetary
    from ranked
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
        round(value_score, 2) as value_score,
        clv_hkd is not null as value_from_clv,
        round(loyalty_score::numeric, 4) as loyalty_score,
        case
            when not is_segmented then null
            when
                value_rank <= ceil({{ var('lv_high_value_share') }} * segmented_customers)
                and loyalty_rank <= ceil({{ var('lv_high_loyalty_share') }} * segmented_customers) then 'A'
            when value_rank <= ceil({{ var('lv_high_value_share') }} * segmented_customers) then 'B'
            when loyalty_rank <= ceil({{ var('lv_high_loyalty_share') }} * segmented_customers) then 'C'
            else 'D'
        end as lv_quadrant,
        case
            when not is_segmented then null
            when value_rank <= round({{ var('abc_high_end_share') }} * segmented_customers) then 'high_end'
            when value_rank <= round({{ var('abc_major_share') }} * segmented_customers) then 'major'
            when value_rank <= round({{ var('abc_ordinary_share') }} * segmented_customers) then 'ordinary'
            else 'small'
        end as abc_tier,
        rfm_recency,
        rfm_frequency,
        rfm_monetary,
        case
            when is_segmented
                then rfm_recency::text || rfm_frequency::text || rfm_monetary::text
        end as rfm_cell
    from loyalty_ranked
)

select * from final
