-- Everything that shows a user doing something on the platform, one row per (user, time, kind):
-- enrolling, progressing or completing a course, logging in (from the users changelog, since users keeps
-- only the last login) and attending a training (check-in). CDC snapshot reads (op r) are not activity.
{{ config(
    partition_by=({'field': 'activity_at', 'data_type': 'timestamp', 'granularity': 'day'}
                  if target.type == 'bigquery' else none),
    cluster_by=(['user_id'] if target.type == 'bigquery' else none),
) }}

with activity as (
    select user_id, enrolled_at as activity_at, 'enrolled' as activity_type
    from {{ ref('stg_enrollments') }}

    union all
    select user_id, completed_at, 'completed_course'
    from {{ ref('stg_enrollments') }}
    where completed_at is not null

    union all
    select user_id, changed_at, 'course_progress'
    from {{ ref('fct_enrollment_events') }}
    where cdc_op = 'u'

    union all
    select user_id, last_login_after, 'login'
    from {{ ref('stg_users__changes') }}
    where last_login_after is not null
      and (last_login_before is null or last_login_after <> last_login_before)

    union all
    select user_id, checked_in_at, 'attended_training'
    from {{ ref('stg_training_attendance') }}
    where attended and checked_in_at is not null
)

select distinct
    user_id,
    activity_at,
    activity_type,
    {{ corisync.utc_date('activity_at') }}                          as activity_date
from activity
where activity_at is not null
