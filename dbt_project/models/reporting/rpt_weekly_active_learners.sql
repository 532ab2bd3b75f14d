-- Looker Studio: active learners per ISO week, one flat row each.
select
    week_start,
    active_learners,
    learners_logged_in,
    activity_events
from {{ ref('mart_active_learners_weekly') }}
