-- Each relationship manager's own customers with clear name, mobile and e-mail: the RM's
-- contact list next to the worklist (marts.rm_worklist has no names). In the schema rm,
-- which BI cannot read; an RM login reads only its own rows (post-hook rm_sees_own_customers).
with customers as (
    select
        rm_id,
        customer_id,
        full_name,
        mobile,
        email,
        branch_id,
        core_status
    from {{ ref('stg_core__customers') }}
    where rm_id is not null
)

select * from customers
