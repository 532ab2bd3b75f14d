"""Run a real Airbyte source connector (the PyPI package) with its Google base URLs pointed at a local double.

Usage (with the connectors' own interpreter, ``.venv-airbyte/bin/python``; ``make airbyte-connectors``)::

    launch.py <google-sheets|google-analytics-data-api> <spec|check|discover|read> \
        [--config F] [--catalog F] [--state F]

It speaks the Airbyte protocol on stdout exactly like the connector's own entry point (``source_*.run``): it
builds the same ``YamlDeclarativeSource`` subclass from the package's ``manifest.yaml`` and hands it to
``airbyte_cdk.entrypoint.launch``. The only difference is the manifest it parses. With
``CORISYNC_GOOGLE_API_URL`` set (e.g. ``http://127.0.0.1:28001/google``), the manifest's Google base URLs
(``url_base`` and the OAuth ``token_refresh_endpoint``s, nothing else) are rewritten to that double:

* ``https://sheets.googleapis.com/v4/spreadsheets/``  -> ``$CORISYNC_GOOGLE_API_URL/sheets/v4/spreadsheets/``
* ``https://analyticsdata.googleapis.com/v1beta``     -> ``$CORISYNC_GOOGLE_API_URL/analyticsdata/v1beta``
* ``https://www.googleapis.com/oauth2/v4/token``      -> ``$CORISYNC_GOOGLE_API_URL/oauth2/v4/token``
* ``https://oauth2.googleapis.com/token``             -> ``$CORISYNC_GOOGLE_API_URL/oauth2/token``

A Google URL of a manifest field it does not know fails the run instead of leaking a request to Google.
Without the variable the manifest runs as published, against the real Google APIs.

The Sheets connector 0.11.0 also gets ``use_parent_parameters: false`` on its dynamic stream definition (the
key the CDK reads there, not on the retriever itself): with airbyte-cdk >= 6.4x the template's own
``$parameters`` (empty ``sheet_id``, ``row_count: 0``) otherwise win over the resolved ones and every stream
reads 0 rows. That fix applies with or without the double.

Not a change of behaviour: ``yaml.safe_load`` uses libyaml's ``CSafeLoader`` when PyYAML has it (the GA4
connector builds its 58 report streams from YAML snippets; this saves a second or two of each run).

This file runs in the connectors' venv, not the project's: it imports only the standard library, yaml and the
connector packages (never ``corisync_assets``).
"""

from __future__ import annotations

import argparse
import functools
import os
import pkgutil
import sys
from typing import Any

import yaml

PACKAGES = {
    "google-sheets": ("source_google_sheets", "source_google_sheets.source", "SourceGoogleSheets"),
    "google-analytics-data-api": ("source_google_analytics_data_api", "source_google_analytics_data_api.source",
                                  "SourceGoogleAnalyticsDataApi"),
}
GOOGLE_API_URL_VAR = "CORISYNC_GOOGLE_API_URL"
#: Google base URL in the published manifests -> path under $CORISYNC_GOOGLE_API_URL
REDIRECTS = {
    "https://sheets.googleapis.com/v4/spreadsheets/": "/sheets/v4/spreadsheets/",
    "https://analyticsdata.googleapis.com/v1beta": "/analyticsdata/v1beta",
    "https://www.googleapis.com/oauth2/v4/token": "/oauth2/v4/token",
    "https://oauth2.googleapis.com/token": "/oauth2/token",
}
#: manifest keys holding a base URL (the request paths are relative to url_base)
URL_KEYS = ("url_base", "token_refresh_endpoint")
VERBS = ("spec", "check", "discover", "read")


class LaunchError(Exception):
    pass


def load_manifest(package: str) -> dict[str, Any]:
    raw = pkgutil.get_data(package, "manifest.yaml")
    if not raw:
        raise LaunchError(f"{package} has no manifest.yaml")
    return yaml.safe_load(raw.decode())


def redirect(manifest: dict[str, Any], base_url: str) -> int:
    """Rewrite the Google base URLs in place (see the module docstring); returns how many were rewritten."""
    base = base_url.rstrip("/")
    count = 0

    def walk(node: Any) -> None:
        nonlocal count
        if isinstance(node, dict):
            for key, value in node.items():
                if key in URL_KEYS and isinstance(value, str):
                    if value in REDIRECTS:
                        node[key] = base + REDIRECTS[value]
                        count += 1
                    elif "googleapis.com" in value:
                        raise LaunchError(f"manifest field {key}: {value} is a Google URL launch.py does not know; "
                                          "add it to REDIRECTS")
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(manifest)
    if count == 0:
        raise LaunchError("no Google base URL found in the manifest: the connector changed, check REDIRECTS")
    return count


def patch_manifest(source_type: str, manifest: dict[str, Any], google_api_url: str | None) -> dict[str, Any]:
    if source_type == "google-sheets":
        for definition in manifest.get("dynamic_streams", []):
            definition["use_parent_parameters"] = False
    if google_api_url:
        redirect(manifest, google_api_url)
    return manifest


def source_class(source_type: str, manifest: dict[str, Any]) -> type:
    """The connector's own source class, reading ``manifest`` instead of its packaged manifest.yaml."""
    import importlib

    _, module, name = PACKAGES[source_type]
    base = getattr(importlib.import_module(module), name)

    def _read_and_parse_yaml_file(self: Any, path_to_yaml_file: str) -> dict[str, Any]:
        return manifest

    # Same module as the original: the CDK finds spec.yaml (Sheets keeps its spec there) by the class's package.
    return type(name, (base,), {"_read_and_parse_yaml_file": _read_and_parse_yaml_file, "__module__": module})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source_type", choices=sorted(PACKAGES))
    parser.add_argument("verb", choices=VERBS)
    parser.add_argument("--config")
    parser.add_argument("--catalog")
    parser.add_argument("--state")
    args = parser.parse_args(argv)

    if getattr(yaml, "CSafeLoader", None):  # the same YAML, parsed by libyaml: the GA4 connector parses YAML
        yaml.safe_load = functools.partial(yaml.load, Loader=yaml.CSafeLoader)  # thousands of times per run
    from airbyte_cdk.entrypoint import launch, logger
    from airbyte_cdk.exception_handler import init_uncaught_exception_handler

    init_uncaught_exception_handler(logger)  # an uncaught error becomes an Airbyte TRACE message, as in run.py
    manifest = patch_manifest(args.source_type, load_manifest(PACKAGES[args.source_type][0]),
                              os.environ.get(GOOGLE_API_URL_VAR) or None)
    cls = source_class(args.source_type, manifest)
    cdk_args = [args.verb]
    for flag in ("config", "catalog", "state"):
        if getattr(args, flag):
            cdk_args += [f"--{flag}", getattr(args, flag)]
    # as the connector's run.py: the source gets the catalog, config and state it will run with
    try:
        source = cls(cls.read_catalog(args.catalog) if args.catalog else None,
                     cls.read_config(args.config) if args.config else None,
                     cls.read_state(args.state) if args.state else None)
    except Exception as error:  # run.py reports this as a TRACE error message (and exits 0; we exit 1)
        _trace_error(f"Error starting the sync. This could be due to an invalid configuration or catalog. "
                     f"Error: {error}")
        return 1
    launch(source, cdk_args)
    return 0


def _trace_error(message: str) -> None:
    import time
    import traceback

    from airbyte_cdk import models as m
    from orjson import orjson

    trace = m.AirbyteTraceMessage(type=m.TraceType.ERROR, emitted_at=time.time() * 1000,
                                  error=m.AirbyteErrorTraceMessage(message=message,
                                                                   stack_trace=traceback.format_exc()))
    print(orjson.dumps(m.AirbyteMessageSerializer.dump(m.AirbyteMessage(type=m.Type.TRACE, trace=trace))).decode())


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LaunchError as exc:
        print(f"launch.py: {exc}", file=sys.stderr)
        sys.exit(2)
