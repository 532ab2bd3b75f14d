-- One row per training in the trainers' workbook (tab trainings), cleaned: ids and dates parsed from what
-- trainers type (macros/sheet_cleaning.sql), names normalised, and the trainer found among the platform's users:
-- by email, else by a name that matches exactly one user up to case and spaces. Blank rows are dropped.
{%- set columns = {
    'training_id': dbt.type_string(), 'course': dbt.type_string(), 'date': dbt.type_string(),
    'start': dbt.type_string(), 'location': dbt.type_string(), 'trainer': dbt.type_string(),
    'trainer_email': dbt.type_string(), 'capacity': dbt.type_string(),
} %}

with tab as (
    select *
    from {{ corisync.airbyte_stream(source('airbyte', 'sheets_trainings'), columns,
                                     rename={'date': 'date_text', 'start': 'start_text'}) }} as t
    where not (
        {%- for name in ['training_id', 'course', 'date_text', 'start_text', 'location', 'trainer',
                         'trainer_email', 'capacity'] %}
        {{ corisync.sheet_blank(name) }}{{ ' and' if not loop.last }}
        {%- endfor %}
    )
),

cleaned as (
    select
        _airbyte_raw_id                                             as sheet_row_id,
        {{ corisync.sheet_integer('training_id') }}                 as training_id,
        {{ corisync.sheet_text('course') }}                         as course,
        {{ corisync.sheet_date('date_text') }}                      as training_date,
        {{ corisync.sheet_time('start_text') }}                     as start_time,
        {{ corisync.sheet_text('location') }}                       as location,
        nullif({{ corisync.title_case('trainer') }}, '')            as trainer_name,
        {{ corisync.sheet_email('trainer_email') }}                 as trainer_email,
        cast({{ corisync.sheet_integer('capacity') }} as {{ dbt.type_int() }}) as capacity,
        _airbyte_extracted_at                                       as extracted_at
    from tab
),

{{ corisync.users_by_name_cte() }}

select
    c.sheet_row_id,
    c.training_id,
    c.course,
    c.training_date,
    c.start_time,
    c.location,
    c.trainer_name,
    c.trainer_email,
    {{ corisync.matched_user_columns('trainer_user_id', 'trainer_matched_by') }},
    c.capacity,
    c.extracted_at
from cleaned as c
{{ corisync.match_user_joins('c.trainer_email', 'c.trainer_name') }}
