{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
    )
}}
-- Bookkeeping of the local-date marts (branch_activity_daily, channel_usage): every
-- (business day, channel, local date) pair fct_interactions has held. Pairs are added, never
-- removed, so when a business day is delivered again and rebuilt, the local dates its
-- earlier version fed (a late ticket of last month that the new file no longer has) are
-- rebuilt too, not only the local dates of the new rows.
with pairs as (
    select distinct
        business_date,
        channel,
        local_date
    from {{ ref('fct_interactions') }}
    {{ business_days_filter() }}
),

final as (
    select pairs.* from pairs
    {% if is_incremental() %}
        where not exists (
            select 1 from {{ this }} as known
            where
                known.business_date = pairs.business_date
                and known.channel = pairs.channel
                and known.local_date = pairs.local_date
        )
    {% endif %}
)

select * from final
