"""Metabase provisioning: the database connection, a collection, questions and dashboards, from the files
under metabase/ in the repository, applied idempotently through Metabase's REST API.

``python -m corisync_assets.metabase apply [--dry-run] [--force]`` (the ``metabase-provision`` one-shot
service in docker/compose/metabase.yml). Modules: ``config`` (the environment, read in one place),
``content`` (the files, validated), ``client`` (HTTP), ``provision`` (plan and apply). Metabase cannot run
on the development machine, so all of this is tested against an in-process double of its API
(tests/metabase/test_provision.py) and the questions against the real marts in DuckDB
(tests/metabase/test_questions_match_marts.py).
"""
