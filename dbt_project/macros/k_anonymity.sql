{#-
    k-anonymity of the quasi-identifiers BI can join (docs/security.md, "Pseudonyms").

    k_anonymise emits a chain of CTEs over `source` (one row per customer: `key` and the
    quasi-identifier `columns`, already generalised for everyone) and ends with the CTE
    named `name`. Each step takes the rows whose combination of `columns` is shared by
    fewer than k rows and generalises one more column for them only (`expression`, e.g. a
    year instead of a month, or null = suppressed); rows in classes of k or more keep their
    detail. A whole class moves together (its rows share every value), and generalising
    only merges classes, so the step after counts exactly the classes BI would see. The
    steps go from the least to the most useful column.

    Greedy steps can leave a residue: rows generalised so far that their class is apart
    from their better-kept neighbours, yet still smaller than k. The last CTE pools, within
    each value of the `fixed` columns (never generalised: other marts need them as they are),
    every class still rarer than k with the smallest other classes until the pool holds k
    rows, and gives the whole pool one value per column (`residue`: an expression over the
    pool, else null). Only a `fixed` group of fewer than k rows is left rarer than k; the
    k_anonymous test fails on it.
-#}
{% macro k_anonymise(source, name, key, columns, fixed, steps, residue, k) -%}
    {%- set partition = columns | join(', ') -%}
    {%- for step in steps %}
    {{ name }}_step_{{ loop.index }} as (
        select
            {{ key }},
            {%- for column in columns %}
            {%- if column == step.column %}
            case
                when count(*) over (partition by {{ partition }}) < {{ k }} then {{ step.expression }}
                else {{ column }}
            end as {{ column }}{{ ',' if not loop.last }}
            {%- else %}
            {{ column }}{{ ',' if not loop.last }}
            {%- endif %}
            {%- endfor %}
        from {{ source if loop.first else name ~ '_step_' ~ (loop.index - 1) }}
    ),
    {%- endfor %}

    {{ name }}_classes as (
        select
            md5(row({{ partition }})::text) as class_key,
            {{ fixed | join(', ') }},
            count(*) as class_size
        from {{ name }}_step_{{ steps | length }}
        group by {{ partition }}
    ),

    {{ name }}_pool as (
        select class_key
        from (
            select
                class_key,
                class_size,
                -- Rows of the rarer classes before this one (rare classes first, then the smallest).
                coalesce(sum(class_size) over (
                    partition by {{ fixed | join(', ') }}
                    order by class_size >= {{ k }}, class_size, class_key
                    rows between unbounded preceding and 1 preceding
                ), 0) as before,
                bool_or(class_size < {{ k }}) over (partition by {{ fixed | join(', ') }}) as has_rare
            from {{ name }}_classes
        ) as ordered
        where has_rare and (class_size < {{ k }} or before < {{ k }})
    ),

    {{ name }}_pooled as (
        select
            steps.*,
            pool.class_key is not null as pooled
        from {{ name }}_step_{{ steps | length }} as steps
        left join {{ name }}_pool as pool on md5(row({{ partition }})::text) = pool.class_key
    ),

    {{ name }} as (
        select
            {{ key }},
            {%- for column in columns %}
            {%- if column in fixed %}
            {{ column }}{{ ',' if not loop.last }}
            {%- else %}
            case when pooled then {{ residue.get(column, 'null') }} else {{ column }} end
                as {{ column }}{{ ',' if not loop.last }}
            {%- endif %}
            {%- endfor %}
        from {{ name }}_pooled
    )
{%- endmacro %}

{#- Classes of `columns` (on the rows `where` selects, config) shared by fewer than k rows. -#}
{% test k_anonymous(model, columns, k=none) %}
    {%- set k = k or var('k_anonymity_k', 5) %}
    select
        {{ columns | join(', ') }},
        count(*) as class_size
    from {{ model }}
    group by {{ columns | join(', ') }}
    having count(*) < {{ k }}
{% endtest %}
