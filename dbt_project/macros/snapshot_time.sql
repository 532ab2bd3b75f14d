{#- DuckDB: snapshot bookkeeping columns as TIMESTAMPTZ, like the updated_at they are compared with
    (dbt-duckdb uses naive TIMESTAMP and dbt warns about the mismatch). BigQuery needs nothing. -#}
{% macro duckdb__snapshot_get_time() -%}
  now()
{%- endmacro %}

{% macro duckdb__snapshot_string_as_time(timestamp) -%}
  {{ return("'" ~ timestamp ~ "'::timestamptz") }}
{%- endmacro %}
