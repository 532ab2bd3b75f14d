"""The dbt models, snapshots and tests as Dagster assets and asset checks."""

import os
import shutil
import time
from pathlib import Path

from dagster import AssetExecutionContext, AssetKey, AssetObservation, MetadataValue, Output
from dagster_dbt import dbt_assets
from dagster_dbt.core.dbt_event_iterator import DbtEventIterator

from corisync_assets.dbt.deferral import BUILT_RESOURCE_TYPES
from corisync_assets.dbt.previews import is_mart, with_previews
from corisync_assets.dbt.project import corisync_dbt_project
from corisync_assets.dbt.resource import CorisyncDbtCliResource
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
def corisync_dbt_assets(context: AssetExecutionContext, dbt: CorisyncDbtCliResource, warehouse: Warehouse):
    """``dbt build`` of the selected models/snapshots; their tests report as asset checks.

    Materializations carry the row count; runs other than automation's also carry the column schema and
    column lineage (sqlglot, DuckDB and BigQuery dialects alike): dagster-dbt's ``fetch_row_counts`` and
    ``fetch_column_metadata``, answered by the warehouse (``warehouse_adapter.py``; no dbt-core in this
    process). Automation runs follow every landing, so they skip what does not change between two landings
    and costs seconds per run: schema and lineage (up to 12 s of a 50 s cycle under `make dev`) and, where
    the warehouse counts tables in one query (DuckDB), the per-event reads, which need the copy dbt holds
    until it exits, so that Dagster would record every event afterwards (~14 s of a cycle here) instead of
    while dbt runs. Those runs stream the events live and end with one observation per built table carrying
    its ``dagster/row_count`` from that one query; views get none (counting a view runs it). The UI shows
    the lineage of the latest run that has it (the daily build, a launch from the UI).

    Every mart's materialization, in every run, carries its row count, column schema and a preview of its
    first rows (``previews.py``), read from the warehouse once the build is published. In automation runs,
    a mart's materialization and its checks are therefore held until dbt exits and the build is published
    (a held asset's checks are held too, so that each check still follows the materialization it checks).

    DuckDB allows one writing process per file, and no reader beside it. So that the lander is not kept out
    for a whole build (11-18 s of every automation cycle here), dbt builds in a copy of the warehouse
    (``Warehouse.dbt_build``): taken under the writer slot between two landings, it is the consistent cut
    dbt reads. After dbt exits, the build is published into the warehouse under the slot (tables rewritten,
    views created again, in dependency order, one transaction), the previews and row counts read, and the
    slot let go before Dagster records the held events. A materialization streams live only when the
    warehouse already answers with what it reports (``live_views``: staging views over the raw tables); the
    rest (the snapshot, the marts, a view new to the warehouse) and their checks wait for the publish. The
    metadata is read from the copy, which no other process uses, and before the publish attaches it.
    BigQuery has no such limit: dbt builds in place and nothing is held.
    """
    full_metadata = context.run.tags.get(AUTOMATION_CONDITION_TAG) != "true"
    counts_in_warehouse = not full_metadata and warehouse.counts_tables
    def key_of(output: Output) -> AssetKey:
        return context.asset_key_for_output(output.output_name)

    copying = time.monotonic()
    with warehouse.dbt_build() as build_path:
        if build_path is not None:
            context.log.info(f"dbt builds in a copy of the warehouse, {build_path} (taken in "
                             f"{time.monotonic() - copying:.2f}s, the wait for the writer slot included)")
        args = ["build"]
        with warehouse.exclusive():  # after the build before this one published (one build at a time)
            deferred, existing = _deferred_tests(context, warehouse)
        if deferred:
            context.log.info(f"leaving out {len(deferred)} test(s) whose other parent does not exist yet: {deferred}")
            args += ["--exclude", " ".join(deferred)]
        invocation = dbt.cli(args, context=context, raise_on_error=False, duckdb_path=build_path,
                             metadata_from=None if counts_in_warehouse else warehouse)
        try:
            relations = dbt_relations(invocation.manifest)
            if counts_in_warehouse:
                live = live_views(invocation.manifest, existing) if build_path is not None else None
                built: list[AssetKey] = []
                held: list = []
                held_keys: set[AssetKey] = set()
                for event in invocation.stream():  # live: Dagster records each event while dbt runs ...
                    key = key_of(event) if isinstance(event, Output) else getattr(event, "asset_key", None)
                    if isinstance(event, Output):
                        built.append(key)
                    if key in held_keys or (isinstance(event, Output) and (
                            is_mart(key) or (live is not None and key not in live))):
                        held_keys.add(key)  # ... except what the warehouse does not answer with before the
                        held.append(event)  # publish (and the marts, whose previews need the published build)
                    else:
                        yield event
                with warehouse.exclusive():
                    _publish(context, warehouse, relations, built)
                    held = [*with_previews(held, key_of, warehouse, relations),
                            *_table_row_counts(warehouse, relations, [k for k in built if not is_mart(k)])]
                yield from held  # recorded after the slot is let go
            elif build_path is not None:
                events = list(invocation.stream())  # until the dbt process exits, releasing the copy
                # the metadata (read from the copy, which only this build uses) ...
                events = list(_with_metadata(DbtEventIterator(iter(events), invocation), full_metadata))
                invocation.adapter.cleanup_connections()  # (the publish attaches the copy)
                with warehouse.exclusive():  # ... then the build published, and the previews read from it
                    _publish(context, warehouse, relations, [key_of(e) for e in events if isinstance(e, Output)])
                    events = list(with_previews(events, key_of, warehouse, relations))
                yield from events
            else:  # dbt built in place (BigQuery): everything streams
                yield from with_previews(_with_metadata(invocation.stream(), full_metadata), key_of, warehouse,
                                         relations)
        finally:
            if invocation.adapter is not None:
                invocation.adapter.cleanup_connections()
            keep_partial_parse(invocation.target_path, invocation.target_path.parent)
            prune_invocation_dirs(invocation.target_path.parent, keep=KEEP_INVOCATION_DIRS)
    if not invocation.is_successful():
        raise invocation.get_error() or RuntimeError("dbt build failed")


def _publish(context: AssetExecutionContext, warehouse: Warehouse, relations: dict[AssetKey, tuple[str, str]],
             built: list[AssetKey]) -> None:
    """What this build built (``built``: the keys dbt reported) into the warehouse, in dependency order
    (``Warehouse.publish_dbt_build``), timed in the run's log; a model that failed keeps its last version.
    Callers hold the writer slot."""
    started = time.monotonic()
    done = set(built)
    count = warehouse.publish_dbt_build([relation for key, relation in relations.items() if key in done])
    context.log.info(f"published {count} relation(s) of the build in {time.monotonic() - started:.2f}s")


def _with_metadata(events: DbtEventIterator, full: bool) -> DbtEventIterator:
    events = events.fetch_row_counts()
    return events.fetch_column_metadata() if full else events


def _built_nodes(manifest: dict) -> list[tuple[dict, list[str]]]:
    """Every model and snapshot with the unique ids of the ones it reads, each after the ones it reads."""
    from graphlib import TopologicalSorter

    nodes = {uid: n for uid, n in manifest["nodes"].items() if n["resource_type"] in BUILT_RESOURCE_TYPES}
    parents = {uid: [d for d in n.get("depends_on", {}).get("nodes", []) if d in nodes] for uid, n in nodes.items()}
    return [(nodes[uid], parents[uid]) for uid in TopologicalSorter(parents).static_order()]


def _relation(node: dict) -> tuple[str, str]:
    return node["schema"], node.get("alias") or node["name"]


def dbt_relations(manifest: dict) -> dict[AssetKey, tuple[str, str]]:
    """(schema, name) of every model and snapshot, by asset key, each after the ones it reads."""
    return {DBT_TRANSLATOR.get_asset_key(node): _relation(node) for node, _ in _built_nodes(manifest)}


def live_views(manifest: dict, existing: set[tuple[str, str]] | None) -> set[AssetKey]:
    """Keys of the views the warehouse already answers with while dbt builds in its copy: view models whose
    view is in the warehouse (``existing``) and that read only sources and other such views, so that their
    rows are the raw tables' own. Their materializations may be recorded before the publish; any other (a
    table, a view new to the warehouse, a view over a built table) would say so before the warehouse has it.
    A view whose SQL changed reaches the warehouse at the publish, seconds later."""
    live: set[str] = set()
    keys: set[AssetKey] = set()
    if not existing:
        return keys
    for node, parents in _built_nodes(manifest):
        if (node.get("config", {}).get("materialized") == "view" and _relation(node) in existing
                and all(p in live for p in parents)):
            live.add(node["unique_id"])
            keys.add(DBT_TRANSLATOR.get_asset_key(node))
    return keys


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


def _deferred_tests(context: AssetExecutionContext,
                    warehouse: Warehouse) -> tuple[list[str], set[tuple[str, str]] | None]:
    """The tests to leave out of this build (``deferral.py``), and which dbt relations the warehouse holds
    (None: it cannot tell)."""
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
    return tests_to_defer(manifest, DBT_TRANSLATOR.get_asset_key, context.selected_asset_keys & own, built), existing


def dbt_asset_keys(layer: str | None = None) -> list[AssetKey]:
    """Keys of the dbt assets, optionally only one layer ("staging", "marts", "snapshots")."""
    keys = sorted(corisync_dbt_assets.keys, key=lambda k: k.to_user_string())
    return [k for k in keys if layer is None or k.path[0] == layer]
