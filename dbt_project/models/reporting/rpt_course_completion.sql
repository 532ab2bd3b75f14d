-- Looker Studio: completion and revenue per course, one flat row each.
select
    course_id,
    course_code,
    course_title,
    {{ dbt.concat(["course_code", "' - '", "course_title"]) }}    as course_label,
    category,
    course_level,
    enrollments,
    active,
    completed,
    dropped,
    completion_rate,
    finished_completion_rate,
    avg_days_to_complete,
    revenue
from {{ ref('mart_course_completion') }}
