-- One row per instructor-led training session (current state). Soft rule: locations trimmed, and
-- 'online'/'remote'/'virtual' in any case spelled 'Online'.
select
    cast(training_id as {{ dbt.type_bigint() }})                    as training_id,
    cast(course_id as {{ dbt.type_bigint() }})                      as course_id,
    cast(trainer_id as {{ dbt.type_bigint() }})                     as trainer_id,
    case
        when lower(trim(location)) in ('online', 'remote', 'virtual') then 'Online'
        else trim(location)
    end                                                             as location,
    {{ dbt.safe_cast('starts_at', corisync.type_instant()) }}       as starts_at,
    {{ dbt.safe_cast('ends_at', corisync.type_instant()) }}         as ends_at,
    cast(capacity as {{ dbt.type_int() }})                          as capacity,
    status                                                          as training_status,
    {{ dbt.safe_cast('updated_at', corisync.type_instant()) }}      as updated_at
from {{ source('raw_cdc', 'trainings') }}
