-- One row per attendee row of the workbook's attendance tabs (attendance_spring, attendance_autumn), cleaned
-- as stg_sheet_trainings is, and the attendee found among the platform's users: by email, else by a name that
-- matches exactly one user up to case and spaces. The email column was renamed halfway through the season
-- (Email in the spring tab, Attendee email in the autumn tab): each tab reads both and takes the one that is
-- filled in. Blank rows are dropped; every other row is kept (sheet_row_id is Airbyte's record id).
{%- set columns = {
    'training_id': dbt.type_string(), 'date': dbt.type_string(), 'attendee': dbt.type_string(),
    'email': dbt.type_string(), 'attendee_email': dbt.type_string(), 'present': dbt.type_string(),
    'notes': dbt.type_string(),
} %}
{%- set tabs = [('spring', 'sheets_attendance_spring'), ('autumn', 'sheets_attendance_autumn')] %}

with tabs as (
    {%- for term, table in tabs %}
    select '{{ term }}' as term, t.*
    from {{ corisync.airbyte_stream(source('airbyte', table), columns, rename={'date': 'date_text'}) }} as t
    {{ 'union all' if not loop.last }}
    {%- endfor %}
),

cleaned as (
    select
        _airbyte_raw_id                                             as sheet_row_id,
        term,
        {{ corisync.sheet_integer('training_id') }}                 as training_id,
        {{ corisync.sheet_date('date_text') }}                      as attendance_date,
        {{ corisync.sheet_text('attendee') }}                       as attendee_name,
        coalesce({{ corisync.sheet_email('attendee_email') }}, {{ corisync.sheet_email('email') }}) as attendee_email,
        {{ corisync.sheet_flag('present') }}                        as present,
        {{ corisync.sheet_text('notes') }}                          as notes,
        _airbyte_extracted_at                                       as extracted_at
    from tabs
    where not (
        {%- for name in ['training_id', 'date_text', 'attendee', 'email', 'attendee_email', 'present', 'notes'] %}
        {{ corisync.sheet_blank(name) }}{{ ' and' if not loop.last }}
        {%- endfor %}
    )
),

{{ corisync.users_by_name_cte() }}

select
    c.sheet_row_id,
    c.term,
    c.training_id,
    c.attendance_date,
    c.attendee_name,
    c.attendee_email,
    {{ corisync.matched_user_columns('user_id', 'user_matched_by') }},
    c.present,
    c.notes,
    c.extracted_at
from cleaned as c
{{ corisync.match_user_joins('c.attendee_email', 'c.attendee_name') }}
