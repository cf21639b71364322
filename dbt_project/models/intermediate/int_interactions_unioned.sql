-- Every customer touchpoint across channels, one row each, with its cost to serve.
with visits as (
    select
        ticket_id as interaction_id,
        customer_id,
        'branch' as channel,
        'visit' as interaction_type,
        ticket_at_utc as occurred_at_utc,
        visit_date_local as local_date,
        business_date,
        branch_id,
        wait_seconds,
        service_seconds as duration_seconds
    from {{ ref('stg_branch__visits') }}
    where customer_id is not null
),

atm as (
    select
        event_id,
        customer_id,
        'atm' as channel,
        'event' as interaction_type,
        event_at_utc,
        event_date_local,
        business_date,
        branch_id,
        null::integer,
        null::integer
    from {{ ref('stg_atm__events') }}
),

online as (
    select
        session_id,
        customer_id,
        'online' as channel,
        'session' as interaction_type,
        login_at_utc,
        session_date_local,
        business_date,
        null::text,
        null::integer,
        session_seconds
    from {{ ref('stg_online__sessions') }}
),

mobile as (
    select
        event_id,
        customer_id,
        'mobile' as channel,
        'event' as interaction_type,
        event_at_utc,
        event_date_local,
        business_date,
        null::text,
        null::integer,
        null::integer
    from {{ ref('stg_mobile__events') }}
),

calls as (
    select
        call_id,
        customer_id,
        'contact_centre' as channel,
        direction || '_call' as interaction_type,
        started_at_utc,
        call_date_local,
        business_date,
        null::text,
        queue_seconds,
        handle_seconds
    from {{ ref('stg_contact_centre__calls') }}
),

unioned as (
    select * from visits
    union all
    select * from atm
    union all
    select * from online
    union all
    select * from mobile
    union all
    select * from calls
),

costs as (
    select
        channel,
        interaction_type,
        unit_cost_hkd
    from {{ ref('ref_channel_costs') }}
),

final as (
    select
        unioned.interaction_id,
        unioned.customer_id,
        unioned.channel,
        unioned.interaction_type,
        unioned.occurred_at_utc,
        unioned.local_date,
        unioned.business_date,
        unioned.branch_id,
        unioned.wait_seconds,
        unioned.duration_seconds,
        coalesce(costs.unit_cost_hkd, 0) as cost_to_serve_hkd
    from unioned
    left join costs
        on unioned.channel = costs.channel and unioned.interaction_type = costs.interaction_type
)

select * from final
