-- Completion per course (all enrollments to date). completion_rate = completed / enrollments;
-- finished_completion_rate = completed / (completed + dropped), i.e. among enrollments that ended.
with per_course as (
    select
        course_id,
        count(*)                                                    as enrollments,
        sum(case when enrollment_status in ('enrolled', 'in_progress') then 1 else 0 end) as active,
        sum(case when enrollment_status = 'completed' then 1 else 0 end) as completed,
        sum(case when enrollment_status = 'dropped' then 1 else 0 end)   as dropped,
        avg(case
            when enrollment_status = 'completed'
                then {{ dbt.datediff(corisync.utc_date('enrolled_at'), corisync.utc_date('completed_at'), 'day') }}
        end)                                                        as avg_days_to_complete,
        sum(amount_paid)                                            as revenue
    from {{ ref('stg_enrollments') }}
    group by 1
)

select
    c.course_id,
    c.course_code,
    c.course_title,
    c.category,
    c.course_level,
    coalesce(p.enrollments, 0)                                      as enrollments,
    coalesce(p.active, 0)                                           as active,
    coalesce(p.completed, 0)                                        as completed,
    coalesce(p.dropped, 0)                                          as dropped,
    {{ corisync.ratio('p.completed', 'p.enrollments') }}            as completion_rate,
    {{ corisync.ratio('p.completed', 'p.completed + p.dropped') }}  as finished_completion_rate,
    round(p.avg_days_to_complete, 2)                                as avg_days_to_complete,
    coalesce(p.revenue, 0)                                          as revenue
from {{ ref('stg_courses') }} as c
left join per_course as p
    on c.course_id = p.course_id
