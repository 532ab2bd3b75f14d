-- Business rule: an enrollment is completed exactly when it has a completion time, and nobody completes
-- a course before enrolling in it. Returns the offending enrollments.
select enrollment_id, enrollment_status, enrolled_at, completed_at
from {{ ref('stg_enrollments') }}
where (enrollment_status = 'completed') <> (completed_at is not null)
   or completed_at < enrolled_at
