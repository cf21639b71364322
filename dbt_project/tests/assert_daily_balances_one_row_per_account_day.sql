-- One row per account and day (the days being built, or all history when no test window is set).
select
    business_date,
    account_id,
    count(*) as copies
from {{ ref('fct_daily_balances') }}
where {{ in_test_window('business_date') }}
group by business_date, account_id
having count(*) > 1
