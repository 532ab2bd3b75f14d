-- Business rule: the funnel narrows. No course-month has more started than enrolled, more completed than
-- started, or more completed + dropped than enrolled.
select funnel_id, enrolled, started, completed, dropped
from {{ ref('mart_enrollment_funnel') }}
where started > enrolled
   or completed > started
   or completed + dropped > enrolled
