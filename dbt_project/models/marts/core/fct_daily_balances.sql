{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='business_date',
        on_schema_change='fail',
        pre_hook="{{ delete_rebuilt('business_date in ' ~ days_to_build()) }}",
        post_hook="create index if not exists {{ this.name }}_business_date_brin on {{ this }} using brin (business_date)",
    )
}}
-- One row per account per business day, in the reporting currency. A daily run
-- rebuilds only the new day (and days whose raw data arrived late).
with converted as (
    select * from {{ ref('int_account_balances_converted') }}
    {{ business_days_filter() }}
),

final as (
    select
        business_date,
        account_id,
        customer_id,
        product_code,
        product_family,
        is_asset,
        currency,
        ledger_balance,
        rate_to_reporting,
        balance_hkd,
        daily_margin_hkd,
        daily_fee_hkd
    from converted
)

select * from final
