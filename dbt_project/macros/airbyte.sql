{#-
  Reading a table that Airbyte writes (sources `airbyte`, models/staging/_airbyte_sources.yml).

  Its columns are not ours to fix: they are the stream's, as the connector discovered them (a sheet's headers,
  snake_cased). A header a trainer deletes or renames removes a column, and before the first sync there is no
  table at all. airbyte_stream() reads the table with exactly the columns a staging model expects:

  * a column the table lacks is NULL, so the model still builds and its not_null tests fail, naming the tab
    and the header (rather than a build error about an unknown column, or a view that cannot be created);
  * a table that does not exist yet (no sync has run) reads as no rows, with a warning in dbt's log, so a
    build of the whole project does not fail before the first sync. Dagster only builds these models on its
    own once the Airbyte assets have materialized (their automation waits for missing parents).
-#}

{#
  `(select ...)`, a subquery to alias in FROM: Airbyte's _airbyte_raw_id (text) and _airbyte_extracted_at
  (instant), then each column of `columns` (an ordered mapping: column name as Airbyte writes it -> SQL type),
  converted with try_cast (NULL when a value does not convert), named rename[column] or the column's own name.
  Column names are matched case-insensitively (GA4's pagePath) and quoted, so `date` is a fine column.
#}
{% macro airbyte_stream(relation, columns, rename={}) -%}
  {%- set found = none -%}
  {%- set present = {} -%}
  {%- if execute -%}
    {%- set found = load_relation(relation) -%}
    {%- if found is none -%}
      {%- do exceptions.warn("Airbyte table " ~ relation ~ " does not exist (no sync has landed it yet): "
                             ~ model.name ~ " reads it as empty") -%}
    {%- else -%}
      {%- for column in adapter.get_columns_in_relation(found) -%}
        {%- do present.update({column.name | lower: column.name}) -%}
      {%- endfor -%}
    {%- endif -%}
  {%- endif -%}
  {%- set wanted = [('_airbyte_raw_id', dbt.type_string()), ('_airbyte_extracted_at', corisync.type_instant())] -%}
  {%- for name, type in columns.items() -%}
    {%- do wanted.append((name, type)) -%}
  {%- endfor -%}
  (
    select
    {%- for name, type in wanted %}
        {% if name | lower in present -%}
          {{ corisync.try_cast(adapter.quote(present[name | lower]), type) }}
        {%- else -%}
          cast(null as {{ type }})
        {%- endif %} as {{ rename.get(name, name) }}{{ "," if not loop.last }}
    {%- endfor %}
    {% if found is not none -%}
    from {{ found }}
    {%- else -%}
    limit 0
    {%- endif %}
  )
{%- endmacro %}
