-- Active learners per ISO week (Monday, UTC): learners with at least one activity that week.
select
    {{ corisync.iso_week_start('a.activity_at') }}                  as week_start,
    count(distinct a.user_id)                                       as active_learners,
    count(*)                                                        as activity_events,
    count(distinct case when a.activity_type = 'login' then a.user_id end) as learners_logged_in
from {{ ref('fct_learner_activity') }} as a
inner join {{ ref('stg_users') }} as u
    on a.user_id = u.user_id
where u.user_role = 'learner'
group by 1
