{#
    Relationship-manager row-level security (post-hook of the rm models and of
    marts.rm_worklist): a member of crm_rm (an RM login, `crm rm grant`) reads only the rows
    of its own rm_id, security.current_rm_id() (migration 0012). The owner (dbt) reads every
    row. Re-applied on every build, so a --full-refresh keeps it.

    What BI sees is bi_sees_published_days' decision, read from its SQL (one source of truth):
    - it restricts BI (a day-grained or current-state mart): an RM sees, of its own rows, only
      those BI may see (the published days or state), and BI and ML keep their policies;
    - it does not (a mart without a day, or the rm schema): RLS enabled here would hide every
      row from readers_see_all (BI and ML on a mart), so they get a policy showing all rows.
#}
{% macro rm_sees_own_customers(readers_see_all=[]) %}
    {%- set bi_policy = 'to crm_bi_reader using \\((.*)\\);?[ \\t]*$' -%}
    {%- set published = modules.re.search(bi_policy, bi_sees_published_days(), modules.re.M) -%}
    {%- set own = 'rm_id = (select security.current_rm_id())' -%}
    {%- if published -%}
        {%- set own = own ~ ' and ' ~ published.group(1) -%}
    {%- endif %}
    alter table {{ this }} enable row level security;
    drop policy if exists rm_own_customers on {{ this }};
    create policy rm_own_customers on {{ this }} for select to crm_rm using ({{ own }});
    drop policy if exists readers_see_all on {{ this }};
    {%- if readers_see_all and not published %}
        create policy readers_see_all on {{ this }} for select to {{ readers_see_all | join(', ') }} using (true);
    {%- endif %}
    grant select on {{ this }} to crm_rm
{% endmacro %}
