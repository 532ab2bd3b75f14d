{#-
  Small cross-database helpers next to dbt's own (dbt.date_trunc, dbt.datediff, dbt.safe_cast, dbt.type_*).
  Each dispatches on the adapter: default__ is DuckDB's dialect, bigquery__ is BigQuery's.
-#}

{# A JSON object's member as text (CDC changelog before/after/key columns). #}
{% macro json_text(column, member) -%}
  {{ return(adapter.dispatch('json_text', 'corisync')(column, member)) }}
{%- endmacro %}
{% macro default__json_text(column, member) -%}
  json_extract_string({{ column }}, '$.{{ member }}')
{%- endmacro %}
{% macro bigquery__json_text(column, member) -%}
  json_value({{ column }}, '$.{{ member }}')
{%- endmacro %}

{# An absolute point in time (TIMESTAMPTZ on DuckDB, TIMESTAMP on BigQuery; both UTC-based). #}
{% macro type_instant() -%}
  {{ return(adapter.dispatch('type_instant', 'corisync')()) }}
{%- endmacro %}
{% macro default__type_instant() -%} timestamptz {%- endmacro %}
{% macro bigquery__type_instant() -%} timestamp {%- endmacro %}

{# ISO-8601 text with zone (as Debezium writes timestamptz into JSON) -> instant; NULL stays NULL. #}
{% macro iso_to_instant(expr) -%}
  {{ return(adapter.dispatch('iso_to_instant', 'corisync')(expr)) }}
{%- endmacro %}
{% macro default__iso_to_instant(expr) -%}
  try_cast({{ expr }} as timestamptz)
{%- endmacro %}
{% macro bigquery__iso_to_instant(expr) -%}
  safe_cast({{ expr }} as timestamp)
{%- endmacro %}

{# Milliseconds since the epoch (Debezium source.ts_ms) -> instant. #}
{% macro epoch_ms_to_instant(expr) -%}
  {{ return(adapter.dispatch('epoch_ms_to_instant', 'corisync')(expr)) }}
{%- endmacro %}
{% macro default__epoch_ms_to_instant(expr) -%}
  epoch_ms(cast({{ expr }} as bigint))
{%- endmacro %}
{% macro bigquery__epoch_ms_to_instant(expr) -%}
  timestamp_millis(cast({{ expr }} as int64))
{%- endmacro %}

{# Calendar date (UTC) of an instant. #}
{% macro utc_date(expr) -%}
  {{ return(adapter.dispatch('utc_date', 'corisync')(expr)) }}
{%- endmacro %}
{% macro default__utc_date(expr) -%}
  cast(timezone('UTC', {{ expr }}) as date)
{%- endmacro %}
{% macro bigquery__utc_date(expr) -%}
  date({{ expr }}, 'UTC')
{%- endmacro %}

{# Monday of the ISO week / first day of the month, as DATE (UTC). dbt.date_trunc('week') starts weeks on
   Sunday on BigQuery and on Monday on DuckDB, hence isoweek there. #}
{% macro iso_week_start(expr) -%}
  {{ return(adapter.dispatch('iso_week_start', 'corisync')(expr)) }}
{%- endmacro %}
{% macro default__iso_week_start(expr) -%}
  cast({{ dbt.date_trunc('week', corisync.utc_date(expr)) }} as date)
{%- endmacro %}
{% macro bigquery__iso_week_start(expr) -%}
  {#- Monday of the week; same as date_trunc(d, isoweek), which the local BigQuery emulator lacks -#}
  date_sub({{ corisync.utc_date(expr) }}, interval mod(extract(dayofweek from {{ corisync.utc_date(expr) }}) + 5, 7) day)
{%- endmacro %}

{% macro month_start(expr) -%}
  cast({{ dbt.date_trunc('month', corisync.utc_date(expr)) }} as date)
{%- endmacro %}

{# Ratio as a double (DuckDB) / FLOAT64 (BigQuery), NULL (not an error) when the denominator is 0. #}
{% macro ratio(numerator, denominator, scale=4) -%}
  round(1.0 * ({{ numerator }}) / nullif({{ denominator }}, 0), {{ scale }})
{%- endmacro %}

{# Cast that gives NULL instead of an error on a value it cannot convert (dbt.safe_cast is a plain cast on
   DuckDB). #}
{% macro try_cast(expr, type) -%}
  {{ return(adapter.dispatch('try_cast', 'corisync')(expr, type)) }}
{%- endmacro %}
{% macro default__try_cast(expr, type) -%}
  try_cast({{ expr }} as {{ type }})
{%- endmacro %}
{% macro bigquery__try_cast(expr, type) -%}
  safe_cast({{ expr }} as {{ type }})
{%- endmacro %}

{# Regular expressions (RE2 on both). `pattern` is written into a plain string literal, so it must hold no
   backslash and no quote (use character classes: [0-9], [ ], [.]). #}

{# True when `pattern` matches somewhere in the text (anchor it with ^...$ for a whole-value match). #}
{% macro regexp_test(expr, pattern) -%}
  {{ return(adapter.dispatch('regexp_test', 'corisync')(expr, pattern)) }}
{%- endmacro %}
{% macro default__regexp_test(expr, pattern) -%}
  regexp_matches({{ expr }}, '{{ pattern }}')
{%- endmacro %}
{% macro bigquery__regexp_test(expr, pattern) -%}
  regexp_contains({{ expr }}, '{{ pattern }}')
{%- endmacro %}

{# The first capturing group of `pattern` (exactly one group), NULL when it does not match. #}
{% macro regexp_group(expr, pattern) -%}
  {{ return(adapter.dispatch('regexp_group', 'corisync')(expr, pattern)) }}
{%- endmacro %}
{% macro default__regexp_group(expr, pattern) -%}
  nullif(regexp_extract({{ expr }}, '{{ pattern }}', 1), '')
{%- endmacro %}
{% macro bigquery__regexp_group(expr, pattern) -%}
  nullif(regexp_extract({{ expr }}, '{{ pattern }}'), '')
{%- endmacro %}

{# Names as people write them, normalised: trimmed, runs of spaces made one, each word (split at spaces and
   hyphens) capitalised and the rest lower case: '  anne-marie   DUPONT ' -> 'Anne-Marie Dupont'. #}
{% macro title_case(expr) -%}
  {{ return(adapter.dispatch('title_case', 'corisync')(expr)) }}
{%- endmacro %}
{% macro default__title_case(expr) -%}
  array_to_string(list_transform(
      string_split(regexp_replace(lower(trim({{ expr }})), ' +', ' ', 'g'), ' '),
      lambda w: array_to_string(list_transform(string_split(w, '-'),
                                               lambda p: upper(left(p, 1)) || substr(p, 2)), '-')
  ), ' ')
{%- endmacro %}
{% macro bigquery__title_case(expr) -%}
  initcap(regexp_replace(lower(trim({{ expr }})), ' +', ' '), ' -')
{%- endmacro %}
