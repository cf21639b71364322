with days as (
    select generate_series('2010-01-01'::date, '2035-12-31'::date, interval '1 day')::date as date_day
),

final as (
    select
        date_day,
        extract(year from date_day)::integer as calendar_year,
        extract(quarter from date_day)::integer as calendar_quarter,
        extract(month from date_day)::integer as calendar_month,
        to_char(date_day, 'YYYY-MM') as month_label,
        date_trunc('month', date_day)::date as month_start,
        (date_trunc('month', date_day) + interval '1 month - 1 day')::date as month_end,
        extract(isodow from date_day)::integer as iso_day_of_week,
        extract(isodow from date_day) in (6, 7) as is_weekend
    from days
)

select * from final
