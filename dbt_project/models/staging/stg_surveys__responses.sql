with source as (
    select
        survey_id,
        customer_id,
        branch_id,
        channel,
        responded_at,
        overall_satisfaction,
        likely_to_continue,
        likely_to_recommend,
        easy_to_do_business,
        understands_needs,
        _business_date
    from {{ source('raw', 'surveys') }}
    -- As of the run date: a re-run of an earlier day sees the surveys known then
    -- (service_quality is rebuilt whole from them).
    where _business_date <= {{ run_date() }}
),

final as (
    select
        survey_id,
        customer_id,
        branch_id,
        channel,
        {{ local_to_utc('responded_at') }} as responded_at_utc,
        responded_at::date as responded_date_local,
        overall_satisfaction,
        likely_to_continue,
        likely_to_recommend,
        easy_to_do_business,
        understands_needs,
        _business_date as business_date
    from source
)

select * from final
