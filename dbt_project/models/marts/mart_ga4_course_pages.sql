-- GA4's figures for each course page and day beside the platform's own (stg_web_page_daily, computed by the
-- Spark job from the collector's events), and their ratios: GA4 misses visitors who block it or refuse
-- consent, the platform misses none of its own pages. Course pages are '/courses/<slug>' and the pages under
-- it (macro course_slug), on both sides alike. Days are those GA4 has reported (any page), so a page that only
-- one side saw on such a day shows 0 on the other; the platform's days outside GA4's range are left out.
-- GA4 properties are summed (one property per site is the norm).
with ga4 as (
    select
        day,
        page_path,
        max(course_slug)                                            as course_slug,
        sum(sessions)                                               as sessions,
        sum(page_views)                                             as page_views,
        sum(users)                                                  as users
    from {{ ref('stg_ga4_course_pages') }}
    where course_slug is not null and day is not null
    group by 1, 2
),

ga4_days as (
    select distinct day from {{ ref('stg_ga4_course_pages') }} where day is not null
),

platform as (
    select
        w.day,
        w.page_path,
        max(w.course_id)                                            as course_id,
        sum(w.sessions)                                             as sessions,
        sum(w.page_views)                                           as page_views,
        sum(w.visitors)                                             as visitors
    from {{ ref('stg_web_page_daily') }} as w
    inner join ga4_days as d
        on w.day = d.day
    where {{ corisync.course_slug('w.page_path') }} is not null
    group by 1, 2
),

course_by_slug as (
    -- a slug is a course's code ('/courses/tc-101') or its id ('/courses/7'), as the platform links them
    select slug, min(course_id) as course_id
    from (
        select lower(course_code) as slug, course_id from {{ ref('stg_courses') }}
        union all
        select cast(course_id as {{ dbt.type_string() }}), course_id from {{ ref('stg_courses') }}
    ) as s
    group by 1
),

pages as (
    select
        coalesce(g.day, p.day)                                      as day,
        coalesce(g.page_path, p.page_path)                          as page_path,
        coalesce(g.course_slug, {{ corisync.course_slug('p.page_path') }}) as course_slug,
        p.course_id                                                 as platform_course_id,
        coalesce(g.sessions, 0)                                     as ga4_sessions,
        coalesce(g.page_views, 0)                                   as ga4_page_views,
        coalesce(g.users, 0)                                        as ga4_users,
        coalesce(p.sessions, 0)                                     as platform_sessions,
        coalesce(p.page_views, 0)                                   as platform_page_views,
        coalesce(p.visitors, 0)                                     as platform_visitors
    from ga4 as g
    full outer join platform as p
        on g.day = p.day and g.page_path = p.page_path
)

select
    {{ dbt.concat(["cast(pg.day as " ~ dbt.type_string() ~ ")", "'|'", "pg.page_path"]) }} as page_day_id,
    pg.day,
    pg.page_path,
    pg.course_slug,
    coalesce(pg.platform_course_id, c.course_id)                    as course_id,
    pg.ga4_sessions,
    pg.ga4_page_views,
    pg.ga4_users,
    pg.platform_sessions,
    pg.platform_page_views,
    pg.platform_visitors,
    {{ corisync.ratio('pg.ga4_sessions', 'pg.platform_sessions') }} as sessions_ratio,
    {{ corisync.ratio('pg.ga4_page_views', 'pg.platform_page_views') }} as page_views_ratio
from pages as pg
left join course_by_slug as c
    on lower(pg.course_slug) = c.slug
