-- One row per customer and day (the days being built, or all history when no test window is set).
select business_date, customer_id, count(*) as copies
from {{ ref('fct_customer_activity_daily') }}
{% if build_setting('test_window_start') %}
    where business_date >= '{{ build_setting("test_window_start") }}'::date
{% endif %}
group by business_date, customer_id
having count(*) > 1
