"""Fixtures for the dbt tests: ``built`` (one full dbt build over a raw CDC warehouse) is shared, in
tests/conftest.py."""
