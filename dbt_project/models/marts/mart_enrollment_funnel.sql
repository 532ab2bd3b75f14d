-- Enrollment funnel per course and enrollment month (UTC): enrolled -> started -> completed, and dropped.
-- "Started" counts an enrollment that is or ever was in progress or completed (history from the
-- changelog), or has any progress, so a learner who started and then dropped out still counts.
{{ config(
    partition_by=({'field': 'enrollment_month', 'data_type': 'date', 'granularity': 'month'}
                  if target.type == 'bigquery' else none),
    cluster_by=(['course_id'] if target.type == 'bigquery' else none),
) }}

with ever_started as (
    select distinct enrollment_id
    from {{ ref('fct_enrollment_events') }}
    where status_after in ('in_progress', 'completed')
),

enrollments as (
    select
        e.enrollment_id,
        e.course_id,
        {{ corisync.month_start('e.enrolled_at') }}                 as enrollment_month,
        e.enrollment_status,
        (
            e.enrollment_status in ('in_progress', 'completed')
            or e.progress_pct > 0
            or s.enrollment_id is not null
        )                                                           as has_started
    from {{ ref('stg_enrollments') }} as e
    left join ever_started as s
        on e.enrollment_id = s.enrollment_id
)

select
    {{ dbt.concat(["cast(e.course_id as " ~ dbt.type_string() ~ ")", "'-'", "cast(e.enrollment_month as " ~ dbt.type_string() ~ ")"]) }}
                                                                    as funnel_id,
    e.course_id,
    c.course_code,
    c.course_title,
    e.enrollment_month,
    count(*)                                                        as enrolled,
    sum(case when e.has_started then 1 else 0 end)                  as started,
    sum(case when e.enrollment_status = 'completed' then 1 else 0 end) as completed,
    sum(case when e.enrollment_status = 'dropped' then 1 else 0 end) as dropped,
    {{ corisync.ratio('sum(case when e.has_started then 1 else 0 end)', 'count(*)') }} as start_rate,
    {{ corisync.ratio("sum(case when e.enrollment_status = 'completed' then 1 else 0 end)", 'count(*)') }}
                                                                    as completion_rate
from enrollments as e
inner join {{ ref('stg_courses') }} as c
    on e.course_id = c.course_id
group by 1, 2, 3, 4, 5
