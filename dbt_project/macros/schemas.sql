{#-
  Where things live.
    DuckDB (local):    raw_cdc | staging | marts | snapshots   (schemas in the warehouse file)
    BigQuery (emu/prod): CORISYNC_BQ_RAW_DATASET | CORISYNC_BQ_STAGING_DATASET | CORISYNC_BQ_MARTS_DATASET
                         (snapshots live in the staging dataset; their names start with snp_)
  Custom schema names are used as they are (no "<target schema>_" prefix, dbt's default).
-#}
{% macro raw_schema() -%}
  {%- if target.type == 'bigquery' -%}
    {{ env_var('CORISYNC_BQ_RAW_DATASET', 'corisync_raw') }}
  {%- else -%}
    raw_cdc
  {%- endif -%}
{%- endmacro %}

{% macro generate_schema_name(custom_schema_name, node) -%}
  {%- if custom_schema_name is none -%}
    {{ target.schema }}
  {%- elif target.type == 'bigquery' -%}
    {%- if custom_schema_name | trim in ('staging', 'snapshots') -%}
      {{ env_var('CORISYNC_BQ_STAGING_DATASET', 'corisync_staging') }}
    {%- elif custom_schema_name | trim == 'marts' -%}
      {{ env_var('CORISYNC_BQ_MARTS_DATASET', 'corisync_marts') }}
    {%- else -%}
      {{ custom_schema_name | trim }}
    {%- endif -%}
  {%- else -%}
    {{ custom_schema_name | trim }}
  {%- endif -%}
{%- endmacro %}
