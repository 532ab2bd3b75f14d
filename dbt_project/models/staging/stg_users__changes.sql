-- One row per change event of public.users, from the append-only CDC changelog; the login columns
-- make logins visible as activity even though users only keeps the last one.
select
    event_id,
    op                                                              as cdc_op,
    cast({{ corisync.json_text('coalesce(after, before)', 'user_id') }} as {{ dbt.type_bigint() }}) as user_id,
    {{ corisync.iso_to_instant(corisync.json_text('before', 'last_login_at')) }}  as last_login_before,
    {{ corisync.iso_to_instant(corisync.json_text('after', 'last_login_at')) }}   as last_login_after,
    cast(source_lsn as {{ dbt.type_bigint() }})                     as source_lsn,
    {{ corisync.epoch_ms_to_instant('source_ts_ms') }}              as changed_at,
    {{ dbt.safe_cast('landed_at', corisync.type_instant()) }}       as landed_at
from {{ source('raw_cdc', 'users__changelog') }}
where op in ('r', 'c', 'u', 'd')
