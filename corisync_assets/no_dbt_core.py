"""dbt-core stays in dbt's own processes; Dagster's load dagster-dbt without it.

dagster-dbt works with or without dbt-core importable (it supports dbt Fusion and a dbt-core installed in
another environment): it decides once, when ``dagster_dbt`` is first imported. With dbt-core importable it
imports dbt-core right away, 1.6 s of every process that loads the code location here (the code server, each
run worker, the lander's recording), for two things this project does not use from those processes:

* dbt-core's selection engine, for ``@dbt_assets(select=...)``: every selection here is the default one
  (all nodes), which dagster-dbt reads from the manifest without an engine. (A narrower selection would
  stop the load with dagster-dbt's ``DagsterDbtCoreNotInstalledError``: select the nodes from the manifest
  in Python instead, or import dbt-core before this module, at the price above);
* dbt's in-process adapter, for row counts and column metadata: the warehouse answers those instead
  (:class:`corisync_assets.dbt.warehouse_adapter.WarehouseAdapter`), in every process alike.

dbt itself runs as a command (``corisync-dbt``: the warm dbt worker, or the dbt CLI), whose processes import
dbt-core as they always did. So :func:`import_dagster_dbt` imports dagster-dbt with dbt-core hidden from that
one import, as if dbt-core lived in another environment; afterwards nothing is hidden. In a process that has
imported dbt-core already (the dbt worker, a test that runs dbt in-process), dagster-dbt finds it in
``sys.modules`` and uses it: the results are the same, only the load is slower.

Importing this module does it: ``corisync_assets/dbt/__init__.py`` imports it before anything else, so no
module of the package imports dagster_dbt first.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys

#: the top-level packages of dbt-core (``dbt`` and the libraries it is built on that only it uses here)
DBT_CORE_PACKAGES = frozenset({"dbt", "dbt_common"})


class _HideDbtCore(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in DBT_CORE_PACKAGES:
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden while dagster_dbt is imported)",
                                      name=fullname)
        return None


def import_dagster_dbt() -> None:
    """Import ``dagster_dbt`` (if this process has not yet) without dbt-core; see the module docstring."""
    if "dagster_dbt" in sys.modules:
        return
    finder = _HideDbtCore()
    sys.meta_path.insert(0, finder)
    try:
        importlib.import_module("dagster_dbt")
    finally:
        sys.meta_path.remove(finder)


import_dagster_dbt()
