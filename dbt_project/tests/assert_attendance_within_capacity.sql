-- Business rule: a training never has more attendees than seats.
{{ config(severity='warn', meta={'dagster': {'ref': {'name': 'stg_training_attendance'}}}) }}
select a.training_id, count(*) as attendees
from {{ ref('stg_training_attendance') }} as a
where a.attended
group by a.training_id
having count(*) > (select max(t.capacity) from {{ ref('stg_trainings') }} as t where t.training_id = a.training_id)
