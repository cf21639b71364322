-- CE11 satisfaction per branch and month (and bank-wide, branch_id 'ALL'): means, top-box
-- shares, engagement classes, complaint handling, against the published benchmarks.
-- Current state, kept per snapshot until published: config in dbt_project.yml (current_state).
with surveys as (
    select * from {{ ref('int_survey_responses_classified') }}
),

complaints as (
    select * from {{ ref('stg_complaints__complaints') }}
),

benchmarks as (
    select * from {{ ref('ce11_benchmarks') }}
),

survey_scores as (
    select
        date_trunc('month', responded_date_local)::date as month_start,
        case when grouping(survey_branch_id) = 1 then 'ALL' else survey_branch_id end as branch_id,
        count(*) as responses,
        avg(overall_satisfaction) as mean_satisfaction,
        avg(likely_to_continue) as mean_continue,
        avg(likely_to_recommend) as mean_recommend,
        avg(easy_to_do_business) as mean_ease,
        avg(understands_needs) as mean_understands,
        avg((overall_satisfaction = {{ var('survey_top_box') }})::integer) as top_box_satisfaction,
        avg((likely_to_continue = {{ var('survey_top_box') }})::integer) as top_box_continue,
        avg((likely_to_recommend = {{ var('survey_top_box') }})::integer) as top_box_recommend,
        avg((engagement_class = 'fully_engaged')::integer) as share_fully_engaged,
        avg((engagement_class = 'engaged')::integer) as share_engaged,
        avg((engagement_class = 'not_engaged')::integer) as share_not_engaged,
        avg((engagement_class = 'actively_disengaged')::integer) as share_actively_disengaged
    from surveys
    group by grouping sets (
        (date_trunc('month', responded_date_local), survey_branch_id),
        (date_trunc('month', responded_date_local))
    )
),

complaint_handling as (
    select
        date_trunc('month', opened_date_local)::date as month_start,
        count(*) as complaints,
        count(*) filter (where status = 'resolved') as complaints_resolved,
        avg(hours_to_resolve) filter (where status = 'resolved') as mean_hours_to_resolve,
        avg(first_contact_resolution::integer) filter (where status = 'resolved') as first_contact_resolution_rate
    from complaints
    group by 1
),

final as (
    select
        {{ run_date() }} as snapshot_date,
        survey_scores.month_start,
        survey_scores.branch_id,
        survey_scores.responses,
        round(survey_scores.mean_satisfaction, 3) as mean_satisfaction,
        round(survey_scores.mean_continue, 3) as mean_continue,
        round(survey_scores.mean_recommend, 3) as mean_recommend,
        round(survey_scores.mean_ease, 3) as mean_ease,
        round(survey_scores.mean_understands, 3) as mean_understands,
        round(survey_scores.top_box_satisfaction, 4) as top_box_satisfaction,
        round(survey_scores.top_box_continue, 4) as top_box_continue,
        round(survey_scores.top_box_recommend, 4) as top_box_recommend,
        round(survey_scores.share_fully_engaged, 4) as share_fully_engaged,
        round(survey_scores.share_engaged, 4) as share_engaged,
        round(survey_scores.share_not_engaged, 4) as share_not_engaged,
        round(survey_scores.share_actively_disengaged, 4) as share_actively_disengaged,
        benchmarks.asia_p50_mean,
        benchmarks.asia_p90_mean,
        benchmarks.hsbc_mean,
        case
            when survey_scores.mean_satisfaction >= benchmarks.asia_p90_mean then 'top_decile'
            when survey_scores.mean_satisfaction >= benchmarks.asia_p50_mean then 'above_median'
            else 'below_median'
        end as benchmark_position,
        case when survey_scores.branch_id = 'ALL' then complaint_handling.complaints end as complaints,
        case when survey_scores.branch_id = 'ALL' then complaint_handling.complaints_resolved end
            as complaints_resolved,
        case
            when survey_scores.branch_id = 'ALL'
                then round(complaint_handling.mean_hours_to_resolve, 1)
        end as mean_hours_to_resolve,
        case
            when survey_scores.branch_id = 'ALL'
                then round(complaint_handling.first_contact_resolution_rate, 4)
        end as first_contact_resolution_rate
    from survey_scores
    cross join benchmarks
    left join complaint_handling on survey_scores.month_start = complaint_handling.month_start
)

select * from final
