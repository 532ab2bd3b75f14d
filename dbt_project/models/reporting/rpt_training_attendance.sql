-- Looker Studio: attendance per trainer and location, one flat row each.
select
    trainer_id,
    coalesce(trainer_name, 'unknown trainer')                      as trainer_name,
    location,
    trainings_held,
    seats_offered,
    registrations,
    attended,
    no_shows,
    attendance_rate,
    no_show_rate,
    seat_utilization,
    avg_feedback_score
from {{ ref('mart_training_attendance') }}
