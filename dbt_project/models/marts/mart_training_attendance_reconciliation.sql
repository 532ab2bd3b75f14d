-- Who attended the trainings of the trainers' workbook, by the sheet and by the platform: one row per training
-- and person found in either. The sheet's rows (stg_sheet_attendance) are matched with the platform's
-- registrations (stg_training_attendance, from CDC) on (training_id, user_id); a sheet person who is not a
-- platform user (no email or unique name match) stays sheet_only, keyed by their email (else their name).
-- Only trainings on the sheet (in the trainings tab or in an attendance tab) are compared: online trainings and
-- others that trainers do not record there are not discrepancies.
with on_sheet as (
    select distinct training_id
    from (
        select training_id from {{ ref('stg_sheet_trainings') }}
        union all
        select training_id from {{ ref('stg_sheet_attendance') }}
    ) as t
    where training_id is not null
),

sheet_rows as (
    select
        training_id,
        user_id,
        case when user_id is null then coalesce(attendee_email, lower(attendee_name)) end as unmapped_person,
        attendee_name,
        attendee_email,
        case when present then 1 when not present then 0 end      as present_flag
    from {{ ref('stg_sheet_attendance') }}
    where training_id is not null
),

sheet as (
    -- a person listed twice for a training (both tabs, or twice in one) counts once: present if any row says so
    select
        training_id,
        user_id,
        unmapped_person,
        min(attendee_name)                                          as attendee_name,
        min(attendee_email)                                         as attendee_email,
        count(*)                                                    as sheet_rows,
        max(present_flag)                                           as present_flag
    from sheet_rows
    group by 1, 2, 3
),

platform as (
    select a.training_id, a.user_id, a.attended
    from {{ ref('stg_training_attendance') }} as a
    inner join on_sheet as o
        on a.training_id = o.training_id
),

reconciled as (
    select
        coalesce(s.training_id, p.training_id)                      as training_id,
        coalesce(s.user_id, p.user_id)                              as user_id,
        s.unmapped_person,
        s.attendee_name,
        s.attendee_email,
        case
            when s.training_id is not null and p.training_id is not null then 'both'
            when s.training_id is not null then 'sheet_only'
            else 'platform_only'
        end                                                         as status,
        case s.present_flag when 1 then true when 0 then false end as attended_sheet,
        p.attended                                                  as attended_platform,
        coalesce(s.sheet_rows, 0)                                   as sheet_rows
    from sheet as s
    full outer join platform as p
        on s.training_id = p.training_id and s.user_id = p.user_id
)

select
    {{ dbt.concat(["cast(training_id as " ~ dbt.type_string() ~ ")", "'|'",
                   "coalesce(" ~ dbt.concat(["'user:'", "cast(user_id as " ~ dbt.type_string() ~ ")"]) ~ ", "
                   ~ dbt.concat(["'sheet:'", "unmapped_person"]) ~ ")"]) }}
                                                                    as reconciliation_id,
    training_id,
    user_id,
    attendee_name,
    attendee_email,
    status,
    attended_sheet,
    attended_platform,
    coalesce(attended_sheet is not null and attended_platform is not null
             and attended_sheet <> attended_platform, false)       as attendance_disagrees,
    sheet_rows
from reconciled
