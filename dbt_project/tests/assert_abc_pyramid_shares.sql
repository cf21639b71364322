-- The ABC pyramid puts exactly round(share x N) segmented customers in each tier
-- (1 / 19 / 30 / 50 %). Returns the snapshot dates (being built, or all) where it does not.
with segments as (
    select * from {{ ref('customer_segments') }}
    where
        abc_tier is not null
        and {{ in_test_window('snapshot_date') }}
),

counts as (
    select
        snapshot_date,
        count(*) as n,
        count(*) filter (where abc_tier = 'high_end') as high_end,
        count(*) filter (where abc_tier in ('high_end', 'major')) as top_major,
        count(*) filter (where abc_tier in ('high_end', 'major', 'ordinary')) as top_ordinary
    from segments
    group by snapshot_date
)

select *
from counts
where
    high_end <> round({{ var('abc_high_end_share') }} * n)
    or top_major <> round({{ var('abc_major_share') }} * n)
    or top_ordinary <> round({{ var('abc_ordinary_share') }} * n)
