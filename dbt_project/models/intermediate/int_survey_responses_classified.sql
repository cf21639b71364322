-- Each CE11 survey response with its engagement class (HSBC's four classes), from the three
-- relationship items: overall satisfaction, likely to continue, likely to recommend.
-- Thresholds are vars (engagement_*) in dbt_project.yml.
with responses as (
    select * from {{ ref('stg_surveys__responses') }}
),

scored as (
    select
        *,
        least(overall_satisfaction, likely_to_continue, likely_to_recommend) as lowest_relationship_item
    from responses
),

final as (
    select
        survey_id,
        customer_id,
        branch_id,
        -- Surveys after digital or phone contact have no branch: reported as 'REMOTE'.
        coalesce(branch_id, 'REMOTE') as survey_branch_id,
        channel,
        responded_at_utc,
        responded_date_local,
        overall_satisfaction,
        likely_to_continue,
        likely_to_recommend,
        easy_to_do_business,
        understands_needs,
        case
            when lowest_relationship_item >= {{ var('engagement_fully_engaged_min_score') }} then 'fully_engaged'
            when lowest_relationship_item <= {{ var('engagement_disengaged_max_score') }} then 'actively_disengaged'
            when lowest_relationship_item >= {{ var('engagement_engaged_min_score') }} then 'engaged'
            else 'not_engaged'
        end as engagement_class,
        business_date
    from scored
)

select * from final
