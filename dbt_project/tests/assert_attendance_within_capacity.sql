-- Business rule: a training never has more attendees than seats.
{{ config(severity='warn', meta={'dagster': {'ref': {'name': 'stg_training_attendance'}}}) }}
select a.training_id, t.capacity, count(*) as attendees
from {{ ref('stg_training_attendance') }} as a
inner join {{ ref('stg_trainings') }} as t
    on a.training_id = t.training_id
where a.attended
group by a.training_id, t.capacity
having count(*) > t.capacity
