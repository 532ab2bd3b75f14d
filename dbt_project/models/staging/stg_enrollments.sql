-- One row per enrollment (current state). Soft rule: a completed enrollment without completed_at uses
-- its last update as completion time (older app versions did not set it).
select
    cast(enrollment_id as {{ dbt.type_bigint() }})                  as enrollment_id,
    cast(user_id as {{ dbt.type_bigint() }})                        as user_id,
    cast(course_id as {{ dbt.type_bigint() }})                      as course_id,
    status                                                          as enrollment_status,
    cast(progress_pct as {{ dbt.type_numeric() }})                  as progress_pct,
    cast(amount_paid as {{ dbt.type_numeric() }})                   as amount_paid,
    {{ dbt.safe_cast('enrolled_at', corisync.type_instant()) }}     as enrolled_at,
    case
        when status = 'completed'
            then coalesce(
                {{ dbt.safe_cast('completed_at', corisync.type_instant()) }},
                {{ dbt.safe_cast('updated_at', corisync.type_instant()) }}
            )
    end                                                             as completed_at,
    {{ dbt.safe_cast('updated_at', corisync.type_instant()) }}      as updated_at,
    status = 'completed'                                            as is_completed
from {{ source('raw_cdc', 'enrollments') }}
