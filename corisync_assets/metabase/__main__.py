"""``python -m corisync_assets.metabase apply [--dry-run] [--force] [--content DIR]``

Applies metabase/ (the database connection, the collection, the questions and dashboards) to the Metabase
at METABASE_URL and prints what it did; no secret is ever printed. Exit code 0 with a report (questions
or dashboards changed in the UI are reported and left alone, unless --force), 1 on any error (settings,
content files, Metabase). Tested against an API double, as Metabase cannot run on the development machine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence

import httpx

from .client import MetabaseClient, MetabaseError
from .config import ConfigError, content_dir, load_config
from .content import load_content
from .provision import provision


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None,
         transport: httpx.BaseTransport | None = None, out: Callable[[str], None] = print,
         wait_s: float = 600.0, poll_s: float = 5.0) -> int:
    parser = argparse.ArgumentParser(prog="python -m corisync_assets.metabase",
                                     description="Provision Metabase from the files in metabase/.")
    sub = parser.add_subparsers(dest="command", required=True)
    apply = sub.add_parser("apply", help="create or update the database, collection, questions, dashboards")
    apply.add_argument("--dry-run", action="store_true", help="only read and print the plan")
    apply.add_argument("--force", action="store_true", help="also replace what was changed in the UI")
    apply.add_argument("--content", default=None, help="content folder (default: <repo>/metabase)")
    args = parser.parse_args(argv)

    secrets: list[str] = []
    try:
        # Everything local first: a missing setting or a bad file fails before any request.
        config = load_config(environ)
        secrets.append(config.admin_password)
        content = load_content(content_dir(args.content))
        database = content.resolve_database(config.environ)
        secrets += database.secret_values
        out(f"metabase: {config.url} ({len(content.questions)} questions, {len(content.dashboards)} dashboards "
            f"from {content.root}; marts {config.marts}){' [dry run]' if args.dry_run else ''}")
        with MetabaseClient(config.url, secrets=secrets, transport=transport) as client:
            report = provision(client, content, config, database, force=args.force, dry_run=args.dry_run,
                               wait_s=wait_s, poll_s=poll_s)
            if client.first_time_setup:
                out(f"instance: first-time setup done, admin {config.admin_email}")
    except (ConfigError, MetabaseError) as exc:
        message = str(exc)
        for secret in secrets:
            if secret:
                message = message.replace(secret, "***")
        out(f"error: {message}")
        return 1
    for line in report.lines():
        out(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
