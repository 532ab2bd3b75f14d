"""Automation never runs a dbt test whose other parent has never been built (no "table does not exist").

Expectations are the tests declared in dbt_project (models/staging/_staging.yml, tests/*.sql), written out
here by hand; the manifest is the real project's."""

from __future__ import annotations

import json

from dagster import AssetKey

from corisync_assets.dbt import DBT_TRANSLATOR, corisync_dbt_project, dbt_asset_keys
from corisync_assets.dbt.deferral import tests_to_defer as deferred_tests


def stg(name: str) -> AssetKey:
    return AssetKey(["staging", name])


def defer(selected, built):
    manifest = json.loads(corisync_dbt_project.manifest_path.read_text())
    return deferred_tests(manifest, DBT_TRANSLATOR.get_asset_key, selected, built)


def test_first_build_of_attendance_alone_leaves_out_the_tests_reading_unbuilt_models():
    assert defer({stg("stg_training_attendance")}, built=set()) == [
        "assert_attendance_within_capacity",
        "relationships_stg_training_attendance_training_id__training_id__ref_stg_trainings_",
        "relationships_stg_training_attendance_user_id__user_id__ref_stg_users_",
    ]


def test_a_parent_built_earlier_or_in_the_same_build_lets_the_test_run():
    assert defer({stg("stg_training_attendance")}, built={stg("stg_users")}) == [
        "assert_attendance_within_capacity",
        "relationships_stg_training_attendance_training_id__training_id__ref_stg_trainings_",
    ]
    assert defer({stg("stg_training_attendance"), stg("stg_trainings")},
                 built={stg("stg_users"), stg("stg_courses")}) == []


def test_nothing_is_left_out_once_everything_exists_or_is_selected():
    everything = set(dbt_asset_keys())
    assert defer(everything, built=set()) == []
    assert defer({stg("stg_users")}, built=everything) == []
