-- Enrollment status history: one row per CDC change of an enrollment. Grows with every change, so it is
-- incremental: each run merges the changelog rows landed since the last run (event_id is unique; rows of
-- the last landed batch are re-read, harmlessly, so a batch landing across two runs is not lost).
{{ config(
    materialized='incremental',
    unique_key='event_id',
    incremental_strategy=('merge' if target.type == 'bigquery' else 'delete+insert'),
    partition_by=({'field': 'changed_at', 'data_type': 'timestamp', 'granularity': 'day'}
                  if target.type == 'bigquery' else none),
    cluster_by=(['course_id', 'user_id'] if target.type == 'bigquery' else none),
) }}

select
    event_id,
    cdc_op,
    enrollment_id,
    user_id,
    course_id,
    status_before,
    status_after,
    progress_pct_after,
    coalesce(status_before, '') <> coalesce(status_after, '')      as is_status_change,
    source_lsn,
    changed_at,
    landed_at
from {{ ref('stg_enrollments__changes') }}
{% if is_incremental() %}
where landed_at >= (
    select coalesce(max(landed_at), {{ dbt.safe_cast("'1970-01-01 00:00:00+00'", corisync.type_instant()) }})
    from {{ this }}
)
{% endif %}
