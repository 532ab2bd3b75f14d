{#-
  Cleaning what people type into a spreadsheet (the trainers' Google Sheets workbook, synced by Airbyte: every
  cell arrives as text) and what GA4 reports. Built only from portable pieces (macros/portable.sql and dbt's
  cross-database macros), so DuckDB and BigQuery read the same cells the same way. A cell that does not follow
  the rule becomes NULL (never a guess), so the staging models' not_null tests point at it.
-#}

{# The cell trimmed, empty -> NULL. #}
{% macro sheet_text(expr) -%}
  nullif(trim({{ expr }}), '')
{%- endmacro %}

{# True when the cell is NULL, empty or only spaces (a blank row has every cell blank). #}
{% macro sheet_blank(expr) -%}
  coalesce(trim({{ expr }}), '') = ''
{%- endmacro %}

{# An id or count as trainers write it: '12', ' 12 ', 'T12', 't 12', '#12' -> 12; anything else -> NULL. #}
{% macro sheet_integer(expr) -%}
  {%- set digits = "regexp_replace(trim(" ~ expr ~ "), '^[#Tt ]*', '')" -%}
  case when {{ corisync.regexp_test(digits, '^[0-9]{1,18}$') }}
      then cast({{ digits }} as {{ dbt.type_bigint() }}) end
{%- endmacro %}

{# A local-format date: day/month/year with a four-digit year ('03/04/2025', '3/4/2025'; '.' or '-' also
   separate), or an ISO date ('2025-04-03'); an impossible date (31/02/2025) or any other text -> NULL. #}
{% macro sheet_date(expr) -%}
  {%- set s = "replace(replace(trim(" ~ expr ~ "), '.', '/'), '-', '/')" -%}
  case
      when {{ corisync.regexp_test(s, '^[0-9]{1,2}/[0-9]{1,2}/[0-9]{4}$') }}
          then {{ corisync.try_cast(dbt.concat([dbt.split_part(s, "'/'", 3), "'-'",
                                                "lpad(" ~ dbt.split_part(s, "'/'", 2) ~ ", 2, '0')", "'-'",
                                                "lpad(" ~ dbt.split_part(s, "'/'", 1) ~ ", 2, '0')"]), 'date') }}
      when {{ corisync.regexp_test(s, '^[0-9]{4}/[0-9]{1,2}/[0-9]{1,2}$') }}
          then {{ corisync.try_cast(dbt.concat([dbt.split_part(s, "'/'", 1), "'-'",
                                                "lpad(" ~ dbt.split_part(s, "'/'", 2) ~ ", 2, '0')", "'-'",
                                                "lpad(" ~ dbt.split_part(s, "'/'", 3) ~ ", 2, '0')"]), 'date') }}
  end
{%- endmacro %}

{# A clock time: '9:30', '09:30', '9:30:00' (seconds dropped), '9h30', '9.30', '14H00', a bare hour ('9', '9h'),
   or 12-hour ('2pm', '2:30 pm', '12am' = 00:00) -> TIME; anything else -> NULL. #}
{% macro sheet_time(expr) -%}
  {%- set s = "replace(replace(replace(lower(trim(" ~ expr ~ ")), 'h', ':'), '.', ':'), ' ', '')" -%}
  {%- set clock = "replace(replace(" ~ s ~ ", 'am', ''), 'pm', '')" -%}
  {%- set hour12 = "mod(cast(" ~ dbt.split_part(clock, "':'", 1) ~ " as " ~ dbt.type_int() ~ "), 12)"
                   ~ " + case when " ~ corisync.regexp_test(s, 'pm$') ~ " then 12 else 0 end" -%}
  case
      when {{ corisync.regexp_test(s, '^[0-9]{1,2}:[0-9]{2}(:[0-9]{2})?$') }}
          then {{ corisync.try_cast(dbt.concat(["lpad(" ~ dbt.split_part(s, "':'", 1) ~ ", 2, '0')", "':'",
                                                dbt.split_part(s, "':'", 2), "':00'"]), 'time') }}
      when {{ corisync.regexp_test(s, '^[0-9]{1,2}:?$') }}
          then {{ corisync.try_cast(dbt.concat(["lpad(replace(" ~ s ~ ", ':', ''), 2, '0')", "':00:00'"]), 'time') }}
      when {{ corisync.regexp_test(s, '^(1[0-2]|0?[1-9])(:[0-9]{2})?[ap]m$') }}
          then {{ corisync.try_cast(dbt.concat(["lpad(cast(" ~ hour12 ~ " as " ~ dbt.type_string() ~ "), 2, '0')",
                                                "':'", "coalesce(" ~ dbt.split_part(clock, "':'", 2) ~ ", '00')",
                                                "':00'"]), 'time') }}
  end
{%- endmacro %}

{# A yes/no cell: yes, y, x, true, 1 -> true; no, n, false, 0 -> false (any case, spaces); blank or anything
   else -> NULL. #}
{% macro sheet_flag(expr) -%}
  case
      when lower(trim({{ expr }})) in ('yes', 'y', 'x', 'true', '1') then true
      when lower(trim({{ expr }})) in ('no', 'n', 'false', '0') then false
  end
{%- endmacro %}

{# An email as typed: trimmed, lower case, empty -> NULL. #}
{% macro sheet_email(expr) -%}
  lower(nullif(trim({{ expr }}), ''))
{%- endmacro %}

{# What two spellings of a person's name have in common when they differ only in case and spaces
   ('Anne  Dupont', 'anne dupont ', 'AnneDupont' -> 'annedupont'). #}
{% macro name_key(expr) -%}
  lower(replace({{ expr }}, ' ', ''))
{%- endmacro %}

{# GA4's date dimension: 'yyyymmdd' (the Data API's format) or 'yyyy-mm-dd' (a connector that types it as a
   date), as text or DATE -> DATE; anything else -> NULL. #}
{% macro ga4_date(expr) -%}
  {%- set s = "replace(trim(cast(" ~ expr ~ " as " ~ dbt.type_string() ~ ")), '-', '')" -%}
  case when {{ corisync.regexp_test(s, '^[0-9]{8}$') }}
      then {{ corisync.try_cast(dbt.concat(["substr(" ~ s ~ ", 1, 4)", "'-'", "substr(" ~ s ~ ", 5, 2)", "'-'",
                                            "substr(" ~ s ~ ", 7, 2)"]), 'date') }}
  end
{%- endmacro %}

{# The course a web page belongs to, from its path: '/courses/<slug>' and the pages under it
   ('/courses/<slug>/learn') -> '<slug>'; the catalog '/courses' and other pages -> NULL. The platform's own
   events carry the course of these pages (stg_web_page_daily.course_id); GA4 only knows the path. #}
{% macro course_slug(page_path) -%}
  {{ corisync.regexp_group(page_path, '^/courses/([^/?#]+)') }}
{%- endmacro %}

{# Finding a sheet's person among the platform's users, written once for trainers and attendees: by email, else
   by a name that belongs to exactly one user up to case and spaces. ``users_by_name_cte()`` is a CTE of the
   model; ``matched_user_columns`` goes into its select list, ``match_user_joins`` after its from. #}
{% macro users_by_name_cte() -%}
users_by_name as (
    select {{ corisync.name_key('full_name') }} as name_key, min(user_id) as user_id
    from {{ ref('stg_users') }}
    group by 1
    having count(*) = 1
)
{%- endmacro %}

{% macro matched_user_columns(id_column, matched_by_column) -%}
    coalesce(e.user_id, n.user_id)                                  as {{ id_column }},
    case
        when e.user_id is not null then 'email'
        when n.user_id is not null then 'name'
    end                                                             as {{ matched_by_column }}
{%- endmacro %}

{% macro match_user_joins(email_expr, name_expr) -%}
left join {{ ref('stg_users') }} as e
    on {{ email_expr }} = e.email
left join users_by_name as n
    on {{ corisync.name_key(name_expr) }} = n.name_key
{%- endmacro %}
