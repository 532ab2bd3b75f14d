-- One row per change event of public.enrollments, from the append-only CDC changelog.
-- Deletes keep the before image, so every event names its enrollment, user and course.
with events as (
    select
        event_id,
        op,
        coalesce(after, before)                                    as row_image,
        before,
        after,
        source_lsn,
        source_ts_ms,
        landed_at
    from {{ source('raw_cdc', 'enrollments__changelog') }}
    where op in ('r', 'c', 'u', 'd')
)

select
    event_id,
    op                                                              as cdc_op,
    cast({{ corisync.json_text('row_image', 'enrollment_id') }} as {{ dbt.type_bigint() }}) as enrollment_id,
    cast({{ corisync.json_text('row_image', 'user_id') }} as {{ dbt.type_bigint() }})       as user_id,
    cast({{ corisync.json_text('row_image', 'course_id') }} as {{ dbt.type_bigint() }})     as course_id,
    {{ corisync.json_text('before', 'status') }}                    as status_before,
    {{ corisync.json_text('after', 'status') }}                     as status_after,
    cast({{ corisync.json_text('after', 'progress_pct') }} as {{ dbt.type_numeric() }})     as progress_pct_after,
    cast(source_lsn as {{ dbt.type_bigint() }})                     as source_lsn,
    {{ corisync.epoch_ms_to_instant('source_ts_ms') }}              as changed_at,
    {{ dbt.safe_cast('landed_at', corisync.type_instant()) }}       as landed_at
from events
