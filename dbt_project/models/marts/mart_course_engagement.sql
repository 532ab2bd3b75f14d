-- Web engagement of each course's enrolled learners: how many were active on the course's pages, in how
-- many sessions and on how many distinct days.
with enrolled as (
    select distinct course_id, user_id from {{ ref('stg_enrollments') }}
),

activity as (
    select
        e.course_id,
        e.known_user_id                                            as user_id,
        e.session_id,
        e.event_date
    from {{ ref('stg_web_events') }} as e
    inner join enrolled as en
        on en.course_id = e.course_id and en.user_id = e.known_user_id
)

select
    c.course_id,
    count(distinct en.user_id)                                      as enrolled_learners,
    count(distinct a.user_id)                                       as active_learners,
    count(distinct a.session_id)                                    as sessions,
    count(distinct {{ dbt.concat(["cast(a.user_id as " ~ dbt.type_string() ~ ")", "'|'",
                                   "cast(a.event_date as " ~ dbt.type_string() ~ ")"]) }}) as learner_active_days,
    case when count(distinct en.user_id) > 0
        then cast(count(distinct a.user_id) as {{ dbt.type_float() }}) / count(distinct en.user_id)
    end                                                             as active_share
from {{ ref('stg_courses') }} as c
left join enrolled as en
    on en.course_id = c.course_id
left join activity as a
    on a.course_id = en.course_id and a.user_id = en.user_id
group by 1
