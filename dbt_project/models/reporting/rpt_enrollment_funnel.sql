-- Looker Studio: the enrollment funnel per course and enrollment month, one flat row each.
select
    course_id,
    course_code,
    course_title,
    {{ dbt.concat(["course_code", "' - '", "course_title"]) }}    as course_label,
    enrollment_month,
    enrolled,
    started,
    completed,
    dropped,
    start_rate,
    completion_rate
from {{ ref('mart_enrollment_funnel') }}
