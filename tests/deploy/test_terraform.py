"""terraform/: formatted (terraform fmt), clean under checkov (offline, --skip-download; its terraform checks
and its secrets scan), laid out per module, every skipped checkov rule documented, no real value in the committed
examples, and the Airbyte connections declared as corisync_assets/airbyte/connections.py declares them."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

from .conftest import TERRAFORM, TOOLS_BIN, copy_tree, tool

CLOUDS = ("gcp", "aws", "digitalocean")
MODULES = (*CLOUDS, "airbyte")  # every root module; airbyte/ declares the Airbyte connections
REQUIRED_FILES = ("main.tf", "variables.tf", "outputs.tf", "provider.tf", "terraform.tfvars.example", "README.md")


def _terraform(*args: str, cwd: Path = TERRAFORM) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null", "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    return subprocess.run([str(tool("terraform")), *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)


def _checkov(directory: Path) -> tuple[int, dict]:
    """checkov's terraform checks and its secrets scan (CKV_SECRET_*: no provider has checks for the Airbyte
    resources, whose risk is a credential pasted into a file), merged into one report."""
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    proc = subprocess.run(
        [str(tool("checkov")), "-d", str(directory), "--framework", "terraform", "secrets", "--skip-download",
         "--output", "json", "--compact"],
        capture_output=True, text=True, timeout=600, env=env,
    )
    parsed = json.loads(proc.stdout) if proc.stdout.strip() else {}
    reports = parsed if isinstance(parsed, list) else [parsed]  # one report per framework that found files
    merged: dict = {"check_types": [], "summary": {"passed": 0, "failed": 0},
                    "results": {"failed_checks": [], "skipped_checks": []}}
    for report in reports:
        merged["check_types"].append(report.get("check_type"))
        for key in ("passed", "failed"):
            merged["summary"][key] += report.get("summary", {}).get(key, 0)
        for key in ("failed_checks", "skipped_checks"):
            merged["results"][key] += report.get("results", {}).get(key, [])
    return proc.returncode, merged


def test_terraform_fmt_check_passes() -> None:
    proc = _terraform("fmt", "-check", "-recursive", "-diff", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("path", "formatted", "broken"), [
    ("gcp/main.tf", "  dataset_id                      = each.value.id", "dataset_id=each.value.id"),
    ("airbyte/main.tf", '        name      = "attendance_spring"', '          name = "attendance_spring"'),
], ids=["gcp", "airbyte"])
def test_terraform_fmt_check_fails_on_a_badly_formatted_copy(tmp_path: Path, path: str, formatted: str,
                                                             broken: str) -> None:
    copy = copy_tree(TERRAFORM, tmp_path / "terraform")
    target = copy / path
    assert formatted in target.read_text()
    target.write_text(target.read_text().replace(formatted, broken, 1))
    proc = _terraform("fmt", "-check", "-recursive", ".", cwd=copy)
    assert proc.returncode != 0
    assert proc.stdout.split() == [path], proc.stdout  # that file, and only it


@pytest.mark.parametrize("cloud", MODULES)
def test_cloud_layout(cloud: str) -> None:
    folder = TERRAFORM / cloud
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    assert not missing, f"terraform/{cloud} lacks {missing}"
    assert f"`{cloud}/`" in (TERRAFORM / "README.md").read_text(), f"terraform/README.md does not list {cloud}/"


@pytest.mark.parametrize("cloud", MODULES)
def test_provider_versions_are_pinned(cloud: str) -> None:
    text = (TERRAFORM / cloud / "provider.tf").read_text()
    versions = re.findall(r'^\s*version\s*=\s*"([^"]+)"', text, re.M)
    assert versions, f"{cloud}: no provider version"
    for version in versions:
        assert re.fullmatch(r"=?\s*\d+\.\d+\.\d+", version), f"{cloud}: provider version {version!r} is not pinned"
    assert re.search(r'required_version\s*=\s*">=\s*1\.\d+', text)


@pytest.mark.parametrize("cloud", MODULES)
def test_tfvars_example_names_only_declared_variables_and_no_secret(cloud: str) -> None:
    declared = set(re.findall(r'^variable\s+"([^"]+)"', (TERRAFORM / cloud / "variables.tf").read_text(), re.M))
    example = (TERRAFORM / cloud / "terraform.tfvars.example").read_text()
    assigned = set(re.findall(r"^([a-z_][a-z0-9_]*)\s*=", example, re.M))
    assert assigned and assigned <= declared, assigned - declared
    variables_tf = (TERRAFORM / cloud / "variables.tf").read_text()
    bodies = dict(re.findall(r'variable\s+"([^"]+)"\s*\{(.*?)\n\}', variables_tf, re.S))
    sensitive = {name for name, body in bodies.items() if re.search(r"^\s*sensitive\s*=\s*true", body, re.M)}
    # a secret has no default and never appears in the example (it comes from TF_VAR_<name>) ...
    assert not {name for name in sensitive if re.search(r"^\s*default\s*=", bodies[name], re.M)}
    assert not sensitive & assigned, f"{cloud}: the example assigns secrets {sensitive & assigned}"
    # ... every other variable without a default does
    required = {name for name, body in bodies.items() if "default" not in body} - sensitive
    assert required <= assigned, f"{cloud}: example lacks required {required - assigned}"
    assert not re.search(r"(?i)(token|password|secret|private_key)\s*=", example)
    assert "example" in example or "my-" in example


def test_cloud_init_is_shared_and_templated() -> None:
    template = TERRAFORM / "cloud-init" / "corisync.yaml.tftpl"
    text = template.read_text()
    assert text.startswith("#cloud-config")
    assert "docker-compose-plugin" in text
    assert "docker compose --env-file .env -f docker-compose.yml up -d" in text
    for cloud in CLOUDS:
        assert "../cloud-init/corisync.yaml.tftpl" in (TERRAFORM / cloud / "main.tf").read_text(), cloud


def test_gcp_datasets_service_accounts_and_vm() -> None:
    text = (TERRAFORM / "gcp" / "main.tf").read_text()
    for layer in ("raw", "staging", "marts"):
        assert re.search(rf"^\s+{layer} = \{{", text, re.M), layer
    assert "default_partition_expiration_ms" in text and "default_table_expiration_ms" in text
    assert "location                        = var.bq_location" in text
    for account in ("dagster", "dbt", "metabase"):
        assert f'resource "google_service_account" "{account}"' in text
    assert "roles/bigquery.admin" not in text and "roles/owner" not in text and "roles/editor" not in text
    assert 'resource "google_compute_instance" "corisync"' in text


def _skipped_rules() -> dict[str, str]:
    """checkov rules skipped anywhere under terraform/: inline `#checkov:skip=ID:reason` comments."""
    skipped: dict[str, str] = {}
    for path in TERRAFORM.rglob("*.tf"):
        for rule, reason in re.findall(r"#\s*checkov:skip=([A-Z0-9_]+):?(.*)", path.read_text()):
            skipped[rule] = reason.strip()
    config = TERRAFORM / ".checkov.yaml"
    assert not config.exists() or "skip-check" not in config.read_text(), "skip rules inline, with a reason"
    return skipped


def test_every_skipped_checkov_rule_has_a_reason_in_the_readme() -> None:
    readme = (TERRAFORM / "README.md").read_text()
    for rule, reason in _skipped_rules().items():
        assert reason, f"{rule} is skipped without a reason"
        line = next((ln for ln in readme.splitlines() if rule in ln), "")
        assert line and len(line) > len(rule) + 20, f"terraform/README.md does not list {rule} with its reason"


def test_checkov_passes_offline() -> None:
    rc, report = _checkov(TERRAFORM)
    summary = report.get("summary", {})
    failed = [(c["check_id"], c["resource"], c["file_path"])
              for c in report.get("results", {}).get("failed_checks", [])]
    assert rc == 0 and not failed, failed or report
    assert summary.get("passed", 0) > 50, summary
    # the secrets scan reports nothing when it finds nothing; test_checkov_fails_on_an_insecure_copy shows it runs
    assert "terraform" in report["check_types"], report["check_types"]
    skipped = {c["check_id"] for c in report["results"].get("skipped_checks", [])}
    assert skipped == set(_skipped_rules()), skipped


def test_checkov_fails_on_an_insecure_copy(tmp_path: Path) -> None:
    """One copy, two independent faults (one checkov run: it takes ~10 s): IMDSv1 allowed on the AWS VM, and
    an Airbyte client secret written into the provider block instead of coming from TF_VAR_airbyte_client_secret."""
    copy = copy_tree(TERRAFORM, tmp_path / "terraform")
    main = copy / "aws" / "main.tf"
    main.write_text(main.read_text().replace('http_tokens                 = "required"',
                                             'http_tokens                 = "optional"', 1))
    assert '"optional"' in main.read_text()
    provider = copy / "airbyte" / "provider.tf"
    # a made-up secret of the shape Airbyte issues (random base64), computed so no such literal sits in the repo
    made_up = base64.b64encode(hashlib.sha256(b"not a real airbyte client secret").digest()).decode()
    provider.write_text(provider.read_text().replace("client_secret = var.airbyte_client_secret",
                                                     f'client_secret = "{made_up}"', 1))
    assert made_up in provider.read_text()
    rc, report = _checkov(copy)
    failed = {(c["check_id"], c["file_path"].lstrip("/")) for c in report["results"]["failed_checks"]}
    assert rc != 0
    assert ("CKV_AWS_79", "aws/main.tf") in failed, failed
    assert {f for check, f in failed if check.startswith("CKV_SECRET_")} == {"airbyte/provider.tf"}, failed


# --- terraform/airbyte against the connections' declaration ------------------------------------------------
#: Airbyte's public API (and so its Terraform provider) names the sync modes by source mode and destination mode
#: together; connections.py spells them as the configuration API does, <syncMode>_<destinationSyncMode>.
PUBLIC_API_SYNC_MODE = {
    "full_refresh_overwrite": "full_refresh_overwrite",
    "full_refresh_append": "full_refresh_append",
    "incremental_append": "incremental_append",
    "incremental_append_dedup": "incremental_deduped_history",
}

_PARSE_HCL = """
import json, sys
from pathlib import Path
import hcl2  # bc-python-hcl2, the HCL parser checkov ships with
blocks = {}
for path in sorted(Path(sys.argv[1]).glob("*.tf")):
    for kind, entries in hcl2.loads(path.read_text()).items():
        for entry in entries:
            for block_type, body in entry.items():
                if kind in ("resource", "data"):
                    for name, attrs in body.items():
                        blocks.setdefault(kind, {}).setdefault(block_type, {})[name] = attrs
                else:
                    blocks.setdefault(kind, {})[block_type] = body
print(json.dumps(blocks))
"""


def _top(attrs: dict) -> dict:
    """A block's attributes: the parser wraps each top-level value in a one-element list; nested ones not."""
    return {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in attrs.items()
            if not k.startswith("__")}


@cache
def _airbyte_module() -> dict:
    """terraform/airbyte parsed by an HCL parser (not regexes): {kind: {type: {name: attributes}}}."""
    python = TOOLS_BIN.parent / "checkov-venv" / "bin" / "python"
    if not python.exists():
        tool("checkov")  # installs the checkov venv
    proc = subprocess.run([str(python), "-c", _PARSE_HCL, str(TERRAFORM / "airbyte")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _reference(expression: str) -> tuple[str, str]:
    """("airbyte_source", "google_sheets") from "${airbyte_source.google_sheets.source_id}" (or data.<type>...)."""
    match = re.fullmatch(r"\$\{(?:data\.)?(\w+)\.(\w+)\.\w+\}", expression)
    assert match, f"not a reference to another block: {expression!r}"
    return match.group(1), match.group(2)


def test_airbyte_connections_match_their_declaration_in_code() -> None:
    """Names, prefixes, streams, sync modes, cursors, primary keys and source connectors of terraform/airbyte are
    those of corisync_assets/airbyte/connections.py; both schedules are manual (Dagster schedules the syncs)."""
    from corisync_assets.airbyte.connections import CONNECTIONS

    module = _airbyte_module()
    declared = {}
    for resource_name, attrs in module["resource"]["airbyte_connection"].items():
        attrs = _top(attrs)
        source = _top(module["resource"][_reference(attrs["source_id"])[0]][_reference(attrs["source_id"])[1]])
        config = _top(module["data"]["airbyte_connector_configuration"][_reference(source["definition_id"])[1]])
        assert resource_name == attrs["name"], "name each resource after its connection"
        declared[attrs["name"]] = {
            "prefix": attrs["prefix"],
            "connector": config["connector_name"],
            "schedule": attrs["schedule"],
            "streams": sorted((s["name"], s["sync_mode"], s.get("cursor_field", []), s.get("primary_key", []))
                              for s in attrs["configurations"]["streams"]),
        }
    expected = {
        c.name: {
            "prefix": c.prefix,
            "connector": f"source-{c.source_type}",
            "schedule": {"schedule_type": "manual"},
            "streams": sorted((s.name, PUBLIC_API_SYNC_MODE[s.sync_mode], list(s.cursor_field),
                               [list(path) for path in s.primary_key]) for s in c.streams),
        }
        for c in CONNECTIONS
    }
    assert declared == expected


def test_airbyte_destination_and_ga4_report_fit_the_connections() -> None:
    """The BigQuery destination writes to the dataset the code reads (default of CORISYNC_BQ_AIRBYTE_DATASET) with
    standard loading; GA4's custom reports are exactly the ga4_web streams, and the dedup key of each is made of
    columns the report yields (its dimensions and the connector's property_id)."""
    from corisync_assets.airbyte.connections import GA4_WEB
    from corisync_assets.environment import Settings

    module = _airbyte_module()
    configs = {name: _top(attrs) for name, attrs in module["data"]["airbyte_connector_configuration"].items()}
    variables = {name: _top(attrs) for name, attrs in module["variable"].items()}

    bigquery = configs["bigquery"]
    assert bigquery["connector_name"] == "destination-bigquery"
    assert bigquery["configuration"]["dataset_id"] == "${var.bq_dataset}"
    assert variables["bq_dataset"]["default"] == Settings.model_fields["bq_airbyte_dataset"].default
    assert bigquery["configuration"]["loading_method"] == {"method": "Standard"}
    assert bigquery["configuration_secrets"] == {"credentials_json": "${var.bigquery_credentials_json}"}

    reports = {r["name"]: r for r in configs["google_analytics"]["configuration"]["custom_reports_array"]}
    assert set(reports) == {s.name for s in GA4_WEB.streams}
    for stream in GA4_WEB.streams:
        columns = {"property_id", *reports[stream.name]["dimensions"]}
        assert {field for path in stream.primary_key for field in path} <= columns, stream
        assert set(stream.cursor_field) <= columns, stream

    # every credential comes from a sensitive variable without a default
    for name in ("airbyte_client_id", "airbyte_client_secret", "google_service_account_json",
                 "bigquery_credentials_json"):
        assert variables[name].get("sensitive") is True and "default" not in variables[name], name
