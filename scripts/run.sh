#!/usr/bin/env bash
# Install mailbridge into .venv (first run only) and start the bot: `bash scripts/run.sh`.
# Settings come from .env or the environment (see .env.example); BOT_TOKEN is required.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_venv
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e .
exec "$VENV/bin/python" -m bot "$@"
