"""The SparkSession of the web job: master, UTC, the worker Python, and the ``corisync_kafka`` source."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MASTER_ENV = "CORISYNC_SPARK_MASTER"
DRIVER_MEMORY_ENV = "CORISYNC_SPARK_DRIVER_MEMORY"
LOG_LEVEL_ENV = "CORISYNC_SPARK_LOG_LEVEL"
#: settings the job's results depend on (timestamps in UTC, micros in Parquet, date-partition overwrite)
REQUIRED_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
}
#: shuffle partitions in local mode unless configured (Spark's 200 only cost task overhead on a few cores)
LOCAL_SHUFFLE_PARTITIONS = "8"
#: the driver JVM's options: a run is short (an incremental batch), and most of a short JVM's CPU is the JIT's
#: C2 compiler; C1 alone halved a small batch's CPU here (63 -> 34 s; wall 43 -> 34 s on 2 cores). A large
#: backfill on one machine may prefer "" (full JIT).
DRIVER_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1"


def build_session(master: str | None = None, app_name: str = "corisync-web-events",
                  conf: dict[str, str] | None = None) -> SparkSession:
    """The (possibly existing) SparkSession, with REQUIRED_CONF and the Kafka data source registered.

    Master: `master`, else $CORISYNC_SPARK_MASTER, else the one spark-submit was given, else ``local[*]``.
    In local mode the workers run this Python (PYSPARK_PYTHON, unless already set). `conf` is applied last
    (settings given to spark-submit with --conf stay unless `conf` names them).
    """
    from pyspark.sql import SparkSession

    from corisync_assets.web.spark.kafka_source import KafkaDataSource

    master = master or os.environ.get(MASTER_ENV)
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ  # launched by spark-submit: the JVM exists
    if not master and not under_submit:
        master = "local[*]"
    builder = SparkSession.builder.appName(app_name).config("spark.ui.showConsoleProgress", "false")
    if master:
        builder = builder.master(master)
    if (master or "").startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.config("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
        if not under_submit:  # the driver JVM starts here: its memory and options can still be chosen
            builder = builder.config("spark.driver.memory", os.environ.get(DRIVER_MEMORY_ENV, "2g"))
            builder = builder.config("spark.driver.extraJavaOptions", DRIVER_JAVA_OPTIONS)
    for key, value in {**REQUIRED_CONF, **(conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    for key, value in REQUIRED_CONF.items():  # getOrCreate on an existing session: set them anyway
        spark.conf.set(key, value)
    if (spark.sparkContext.master.startswith("local") and "spark.sql.shuffle.partitions" not in (conf or {})
            and not spark.sparkContext.getConf().contains("spark.sql.shuffle.partitions")):
        spark.conf.set("spark.sql.shuffle.partitions", LOCAL_SHUFFLE_PARTITIONS)
    # spark-submit's default is INFO: a line per task would drown the job's own stage lines in the run log
    spark.sparkContext.setLogLevel(os.environ.get(LOG_LEVEL_ENV, "WARN"))
    spark.dataSource.register(KafkaDataSource)
    return spark
