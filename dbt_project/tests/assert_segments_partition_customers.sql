-- Every customer appears once per snapshot; every segmented (non-prospect, non-churned)
-- customer has exactly one LV quadrant and one ABC tier, others have none (the snapshots
-- being built, or all history when no test window is set).
select
    snapshot_date,
    customer_id,
    count(*) as rows_for_customer
from {{ ref('customer_segments') }}
where {{ in_test_window('snapshot_date') }}
group by snapshot_date, customer_id
having
    count(*) > 1
    or bool_or((lifecycle_stage in ('prospect', 'churned')) = (lv_quadrant is not null))
    or bool_or((lv_quadrant is null) <> (abc_tier is null))
