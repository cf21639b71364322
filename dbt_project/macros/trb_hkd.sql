{#- Total relationship balance (TRB), the one definition of it: an aggregate over
    fct_daily_balances rows (one account and day each) summing the balances of asset
    products (deposits, investments, insurance) that are in credit, in the reporting
    currency. An overdrawn asset account counts 0: its debit is money owed, not held, and
    is not netted off the customer's other balances; loans and cards are not deducted.
    Null when no asset account is in credit. fct_customer_activity_daily applies it per
    customer and day; customer_360 reads that column for both the snapshot day and the day
    30 days earlier (so rm_worklist's falling-balance sign compares like with like). -#}
{% macro trb_hkd(balance='balance_hkd', is_asset='is_asset') -%}
    sum({{ balance }}) filter (where {{ is_asset }} and {{ balance }} > 0)
{%- endmacro %}
