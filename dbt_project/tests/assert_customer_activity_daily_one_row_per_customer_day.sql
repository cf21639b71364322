-- One row per customer and day (the days being built, or all history when no test window is set).
select
    business_date,
    customer_id,
    count(*) as copies
from {{ ref('fct_customer_activity_daily') }}
where {{ in_test_window('business_date') }}
group by business_date, customer_id
having count(*) > 1
