{{ config(materialized='table') }}
-- One FX rate per currency and calendar day: the day's fixing or, if that day's file is
-- missing, the last earlier one (carried forward up to a week past the last fixing).
with rates as (
    select
        rate_date,
        currency,
        rate_to_reporting
    from {{ ref('stg_treasury__fx_rates') }}
    where reporting_currency = upper('{{ var("reporting_currency") }}')
),

spine as (
    select generate_series(min(rate_date), max(rate_date) + 7, interval '1 day')::date as rate_date
    from rates
),

currencies as (
    select distinct currency from rates
),

grid as (
    select
        spine.rate_date,
        currencies.currency
    from spine
    cross join currencies
),

numbered as (
    select
        grid.rate_date,
        grid.currency,
        rates.rate_to_reporting,
        -- Each fixing starts a group; the days without one belong to the last group.
        count(rates.rate_to_reporting) over (partition by grid.currency order by grid.rate_date) as fixing_group
    from grid
    left join rates on grid.rate_date = rates.rate_date and grid.currency = rates.currency
),

final as (
    select
        rate_date,
        currency,
        first_value(rate_to_reporting) over (
            partition by currency, fixing_group order by rate_date
        ) as rate_to_reporting
    from numbered
)

select * from final
where rate_to_reporting is not null
