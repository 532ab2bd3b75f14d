-- Course dimension (current attributes); history of price / publication in the snp_courses snapshot.
select
    c.course_id,
    c.course_code,
    c.course_title,
    c.category,
    c.course_level,
    c.price,
    c.duration_hours,
    c.is_published,
    c.created_at,
    c.updated_at
from {{ ref('stg_courses') }} as c
