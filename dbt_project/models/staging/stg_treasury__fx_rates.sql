with source as (
    select
        rate_date,
        currency,
        reporting_currency,
        rate,
        _business_date
    from {{ source('raw', 'fx_rates') }}
),

final as (
    select
        rate_date,
        upper(currency) as currency,
        upper(reporting_currency) as reporting_currency,
        rate as rate_to_reporting,
        _business_date as business_date
    from source
)

select * from final
