"""Fixtures of the BigQuery tier. BigQuery cannot run here: the `bqemulator` emulator (BigQuery's REST API
over DuckDB) stands in for it, in its own venv (`python -m tests.bigquery.emulator install`; `make test`
installs it). Without that venv the tier is skipped, saying so; with it, a failing emulator fails the tests.

* ``bq_emulator`` (session): the running emulator (`Emulator`: host, project, log), stopped at the end.
* ``bq_warehouse`` (function): a `BigQueryWarehouse` on the emulator with its own fresh raw dataset.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from corisync_assets.resources.warehouse.bigquery import BigQueryWarehouse
from tests.bigquery import emulator as emu


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[emu.Emulator]:
    if not emu.installed():
        pytest.skip(f"BigQuery emulator venv not installed at {emu.VENV}: run "
                    "`python -m tests.bigquery.emulator install` (make test does)")
    log = tmp_path_factory.mktemp("bqemu") / "emulator.log"
    server = emu.start(log=log)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bq_warehouse(bq_emulator: emu.Emulator) -> BigQueryWarehouse:
    wh = BigQueryWarehouse(project=bq_emulator.project, dataset=f"raw_{uuid.uuid4().hex[:10]}",
                           emulator_host=bq_emulator.host)
    wh.create_dataset()
    return wh
