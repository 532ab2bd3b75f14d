-- Attendance and no-shows per trainer and location, over trainings that took place (status completed;
-- scheduled and cancelled sessions are left out). A registration without recorded attendance on a
-- completed training is a no-show.
with held as (
    select training_id, trainer_id, location, capacity
    from {{ ref('stg_trainings') }}
    where training_status = 'completed'
),

registrations as (
    select
        h.trainer_id,
        h.location,
        count(*)                                                    as registrations,
        sum(case when a.attended then 1 else 0 end)                 as attended,
        sum(case when a.attended then 0 else 1 end)                 as no_shows,
        avg(a.feedback_score)       as avg_feedback_score
    from held as h
    inner join {{ ref('stg_training_attendance') }} as a
        on h.training_id = a.training_id
    group by 1, 2
),

sessions as (
    select trainer_id, location, count(*) as trainings_held, sum(capacity) as seats_offered
    from held
    group by 1, 2
)

select
    {{ dbt.concat(["cast(s.trainer_id as " ~ dbt.type_string() ~ ")", "'|'", "s.location"]) }} as trainer_location_id,
    s.trainer_id,
    u.full_name                                                     as trainer_name,
    s.location,
    s.trainings_held,
    s.seats_offered,
    coalesce(r.registrations, 0)                                    as registrations,
    coalesce(r.attended, 0)                                         as attended,
    coalesce(r.no_shows, 0)                                         as no_shows,
    {{ corisync.ratio('r.attended', 'r.registrations') }}           as attendance_rate,
    {{ corisync.ratio('r.no_shows', 'r.registrations') }}           as no_show_rate,
    {{ corisync.ratio('r.attended', 's.seats_offered') }}           as seat_utilization,
    round(r.avg_feedback_score, 2)                                  as avg_feedback_score
from sessions as s
left join registrations as r
    on s.trainer_id = r.trainer_id and s.location = r.location
left join {{ ref('stg_users') }} as u
    on s.trainer_id = u.user_id
