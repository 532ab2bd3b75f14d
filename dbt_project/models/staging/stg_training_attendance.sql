-- One row per registration of a user for a training. attended is NULL until the trainer records it;
-- a check-in time implies attendance (soft rule).
select
    {{ dbt.concat(["cast(training_id as " ~ dbt.type_string() ~ ")", "'-'", "cast(user_id as " ~ dbt.type_string() ~ ")"]) }}
                                                                    as registration_id,
    cast(training_id as {{ dbt.type_bigint() }})                    as training_id,
    cast(user_id as {{ dbt.type_bigint() }})                        as user_id,
    {{ dbt.safe_cast('registered_at', corisync.type_instant()) }}   as registered_at,
    case
        when checked_in_at is not null then true
        else attended
    end                                                             as attended,
    {{ dbt.safe_cast('checked_in_at', corisync.type_instant()) }}   as checked_in_at,
    cast(feedback_score as {{ dbt.type_int() }})                    as feedback_score
from {{ source('raw_cdc', 'training_attendance') }}
