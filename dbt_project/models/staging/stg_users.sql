-- One row per platform user (current state). Soft rules: emails compared lower-case, country codes
-- upper-case and blank -> NULL, names trimmed.
select
    cast(user_id as {{ dbt.type_bigint() }})                       as user_id,
    lower(trim(email))                                              as email,
    trim(full_name)                                                 as full_name,
    nullif(upper(trim(country_code)), '')                           as country_code,
    role                                                            as user_role,
    is_active,
    {{ dbt.safe_cast('signup_at', corisync.type_instant()) }}       as signup_at,
    {{ dbt.safe_cast('last_login_at', corisync.type_instant()) }}   as last_login_at,
    {{ dbt.safe_cast('updated_at', corisync.type_instant()) }}      as updated_at,
    {{ corisync.epoch_ms_to_instant('_cdc_ts_ms') }}                as cdc_committed_at
from {{ source('raw_cdc', 'users') }}
