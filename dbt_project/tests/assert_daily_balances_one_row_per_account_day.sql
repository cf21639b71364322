select business_date, account_id, count(*) as copies
from {{ ref('fct_daily_balances') }}
group by business_date, account_id
having count(*) > 1
