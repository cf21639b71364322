with source as (
    select
        session_id,
        customer_id,
        login_at,
        logout_at,
        page_views,
        transactions,
        browser,
        login_result,
        _business_date
    from {{ source('raw', 'online_sessions') }}
),

final as (
    select
        session_id,
        customer_id,
        login_at as login_at_utc,
        {{ local_date('login_at') }} as session_date_local,
        extract(epoch from logout_at - login_at)::integer as session_seconds,
        page_views,
        transactions as transactions_made,
        browser,
        login_result,
        _business_date as business_date
    from source
)

select * from final
