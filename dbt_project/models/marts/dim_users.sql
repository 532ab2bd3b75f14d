-- User dimension with first and last activity (see fct_learner_activity) and learning totals.
with activity as (
    select user_id, min(activity_at) as first_activity_at, max(activity_at) as last_activity_at
    from {{ ref('fct_learner_activity') }}
    group by 1
),

enrollments as (
    select
        user_id,
        count(*)                                                    as enrollments,
        sum(case when enrollment_status = 'completed' then 1 else 0 end) as completed_courses
    from {{ ref('stg_enrollments') }}
    group by 1
),

trainings as (
    select user_id, sum(case when attended then 1 else 0 end) as trainings_attended
    from {{ ref('stg_training_attendance') }}
    group by 1
)

select
    u.user_id,
    u.email,
    u.full_name,
    u.country_code,
    u.user_role,
    u.is_active,
    u.signup_at,
    a.first_activity_at,
    a.last_activity_at,
    coalesce(e.enrollments, 0)                                      as enrollments,
    coalesce(e.completed_courses, 0)                                as completed_courses,
    coalesce(t.trainings_attended, 0)                               as trainings_attended
from {{ ref('stg_users') }} as u
left join activity as a on u.user_id = a.user_id
left join enrollments as e on u.user_id = e.user_id
left join trainings as t on u.user_id = t.user_id
