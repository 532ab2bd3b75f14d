"""The web-analytics Spark job: Kafka source (``kafka_source``), pure transforms (``transform``), the
SparkSession (``session``) and the ``spark-submit`` entry point driven by Dagster Pipes (``job``)."""
