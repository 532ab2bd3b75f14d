"""The dbt models, snapshots and tests as Dagster assets and asset checks."""

import os
import shutil
from pathlib import Path

from dagster import AssetExecutionContext, AssetKey, AssetObservation, MetadataValue, Output
from dagster_dbt import DbtCliResource, dbt_assets
from dagster_dbt.core.dbt_event_iterator import DbtEventIterator

from corisync_assets.dbt.deferral import BUILT_RESOURCE_TYPES
from corisync_assets.dbt.previews import is_mart, with_previews
from corisync_assets.dbt.project import corisync_dbt_project
from corisync_assets.dbt.translator import CorisyncDbtTranslator
from corisync_assets.resources.warehouse.base import Warehouse

DBT_TRANSLATOR = CorisyncDbtTranslator()
#: per-invocation target directories kept (see prune_invocation_dirs); named after the op
INVOCATION_DIR_PREFIX = "corisync_dbt-"
KEEP_INVOCATION_DIRS = 20
#: the tag Dagster puts on runs that automation conditions requested (dagster._core.storage.tags)
AUTOMATION_CONDITION_TAG = "dagster/from_automation_condition"


@dbt_assets(
    manifest=corisync_dbt_project.manifest_path,
    project=corisync_dbt_project,
    dagster_dbt_translator=DBT_TRANSLATOR,
    name="corisync_dbt",
)
def corisync_dbt_assets(context: AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
    """``dbt build`` of the selected models/snapshots; their tests report as asset checks.

    Materializations carry the row count; runs other than automation's also carry the column schema and
    column lineage (sqlglot, DuckDB and BigQuery dialects alike), read through an in-process dbt adapter
    that dagster-dbt builds before it starts dbt. Automation runs follow every landing, so they skip what
    does not change between two landings and costs seconds per run: schema and lineage (up to 12 s of a
    50 s cycle under `make dev`) and, where the warehouse counts tables in one query (DuckDB), the adapter
    itself: about 2 s before dbt starts, and it made the events wait for dbt's exit (the adapter needs the
    file dbt holds), so that Dagster recorded them all afterwards (~14 s of a cycle here) instead of while
    dbt runs. Those runs stream the events live and end with one observation per built table carrying its
    ``dagster/row_count`` from that one query; views get none (counting a view runs it). The UI shows the
    lineage of the latest run that has it (the daily build, a launch from the UI).

    Every mart's materialization, in every run, carries its row count, column schema and a preview of its
    first rows (``previews.py``), read after dbt built it. In automation runs against DuckDB, the events from
    the first mart on are therefore held until dbt exits (the file is dbt's until then), so that each check
    still follows the materialization it checks.

    DuckDB allows one writing process per file. Every writer takes the warehouse's writer slot first (a
    file lock; BigQuery has no such limit and nothing is held): here around the look at which relations
    exist (``_deferred_tests``) and around the row counts; the dbt process takes it itself from its first
    connection to its exit (plugin ``resources/warehouse/duckdb_writer_slot.py``), so the lander is not
    held up by dbt's start. Where the in-process adapter is used against DuckDB, the dbt events are
    therefore collected until the dbt process has exited, then enriched under the slot (BigQuery streams
    them). The in-process connections are closed at the end, freeing the file.
    """
    args = ["build"]
    with warehouse.exclusive():
        deferred = _deferred_tests(context, warehouse)
    if deferred:
        context.log.info(f"leaving out {len(deferred)} test(s) whose other parent does not exist yet: {deferred}")
        args += ["--exclude", " ".join(deferred)]
    full_metadata = context.run.tags.get(AUTOMATION_CONDITION_TAG) != "true"
    counts_in_warehouse = not full_metadata and warehouse.counts_tables
    def key_of(output: Output) -> AssetKey:
        return context.asset_key_for_output(output.output_name)

    invocation = dbt.cli(args, context=context, raise_on_error=False, in_process_adapter=not counts_in_warehouse)
    try:
        relations = dbt_relations(invocation.manifest)
        if counts_in_warehouse:
            built: list[AssetKey] = []
            held: list = []
            for event in invocation.stream():  # live: Dagster records each event while dbt runs ...
                if isinstance(event, Output):
                    built.append(key_of(event))
                if held or (isinstance(event, Output) and is_mart(built[-1])):
                    held.append(event)  # ... up to the first mart, whose preview needs the file dbt holds
                else:
                    yield event
            with warehouse.exclusive():
                yield from with_previews(held, key_of, warehouse, relations)
                yield from _table_row_counts(warehouse, relations, [k for k in built if not is_mart(k)])
        elif invocation.manifest.get("metadata", {}).get("adapter_type") == "duckdb":
            events = list(invocation.stream())  # until the dbt process exits, releasing the file
            with warehouse.exclusive():
                # the adapter's metadata first (its threads query the file), then the previews
                events = list(_with_metadata(DbtEventIterator(iter(events), invocation), full_metadata))
                yield from with_previews(events, key_of, warehouse, relations)
        else:
            yield from with_previews(_with_metadata(invocation.stream(), full_metadata), key_of, warehouse,
                                     relations)
    finally:
        if invocation.adapter is not None:
            invocation.adapter.cleanup_connections()
        keep_partial_parse(invocation.target_path, invocation.target_path.parent)
        prune_invocation_dirs(invocation.target_path.parent, keep=KEEP_INVOCATION_DIRS)
    if not invocation.is_successful():
        raise invocation.get_error() or RuntimeError("dbt build failed")


def _with_metadata(events: DbtEventIterator, full: bool) -> DbtEventIterator:
    events = events.fetch_row_counts()
    return events.fetch_column_metadata() if full else events


def dbt_relations(manifest: dict) -> dict[AssetKey, tuple[str, str]]:
    """(schema, name) of every model and snapshot, by asset key."""
    return {DBT_TRANSLATOR.get_asset_key(n): (n["schema"], n.get("alias") or n["name"])
            for n in manifest["nodes"].values() if n["resource_type"] in BUILT_RESOURCE_TYPES}


def _table_row_counts(warehouse: Warehouse, relations: dict[AssetKey, tuple[str, str]], built: list[AssetKey]):
    """An observation with ``dagster/row_count`` for each built table, from one warehouse query. Callers
    hold the writer slot."""
    wanted = {key: relations[key] for key in built if key in relations}
    counts = warehouse.table_row_counts(list(wanted.values())) or {}
    for key, relation in wanted.items():
        if relation in counts:
            yield AssetObservation(asset_key=key, metadata={"dagster/row_count": MetadataValue.int(counts[relation])})


def keep_partial_parse(invocation_dir: Path, target_dir: Path) -> bool:
    """Put the invocation's ``partial_parse.msgpack`` where dagster-dbt takes the next one from.

    dbt reuses a partial parse only if it was made with the same profile, DuckDB path included. The code
    location's parse may have run with other settings (another home, a test's warehouse), and then every
    build would parse in full (7 s here) and leave its result in its own directory. After one build, the
    ones that follow start from a parse made with the profile they run with."""
    made = invocation_dir / "partial_parse.msgpack"
    if not made.is_file():
        return False
    partial = target_dir / f".partial_parse.msgpack.{os.getpid()}"
    shutil.copyfile(made, partial)
    os.replace(partial, target_dir / "partial_parse.msgpack")  # atomic: a build starting now reads either
    return True


def prune_invocation_dirs(target_root: Path, keep: int) -> list[Path]:
    """Remove all but the ``keep`` newest per-invocation target directories (``corisync_dbt-<run>-<id>``).

    dagster-dbt gives every invocation its own target directory (manifest, run results, compiled SQL:
    about 3 MB here) and never removes it; with automation building after every landing that is gigabytes
    a day. The newest ones stay for debugging a run."""
    dirs = sorted((d for d in target_root.glob(f"{INVOCATION_DIR_PREFIX}*") if d.is_dir()),
                  key=lambda d: d.stat().st_mtime, reverse=True)
    for old in dirs[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return dirs[keep:]


def _deferred_tests(context: AssetExecutionContext, warehouse: Warehouse) -> list[str]:
    import json

    from corisync_assets.dbt.deferral import tests_to_defer

    manifest = json.loads(corisync_dbt_project.manifest_path.read_text())
    own = set(corisync_dbt_assets.keys)
    nodes = dbt_relations(manifest)
    existing = warehouse.existing_relations(list(nodes.values()))
    if existing is not None:
        built = {key for key, relation in nodes.items() if relation in existing}
    else:  # the warehouse cannot tell: what the instance saw built
        latest = context.instance.get_latest_materialization_events(list(own))
        built = {key for key, event in latest.items() if event is not None}
    return tests_to_defer(manifest, DBT_TRANSLATOR.get_asset_key, context.selected_asset_keys & own, built)


def dbt_asset_keys(layer: str | None = None) -> list[AssetKey]:
    """Keys of the dbt assets, optionally only one layer ("staging", "marts", "snapshots")."""
    keys = sorted(corisync_dbt_assets.keys, key=lambda k: k.to_user_string())
    return [k for k in keys if layer is None or k.path[0] == layer]
