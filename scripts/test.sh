#!/usr/bin/env bash
# Install everything the tests need (Python packages into .venv; Dovecot and Redis from Debian's
# packages when missing; Redis started on 127.0.0.1:6379 when not running; the fleet tests also
# need PostgreSQL on 127.0.0.1:5432, see README) and run the whole suite: `bash scripts/test.sh [pytest args]`.
# TEST_DATABASE_URL=postgresql+asyncpg://... runs the same suite against PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_debian_packages dovecot-imapd dovecot-lmtpd redis-server
ensure_redis
ensure_venv
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e ".[test]"
# Dovecot stops using inotify past 128 IDLE processes per user: raise the limit when allowed.
if [ -w /proc/sys/fs/inotify/max_user_instances ]; then
  echo 8192 > /proc/sys/fs/inotify/max_user_instances || true
fi
"$VENV/bin/ruff" check .
"$VENV/bin/mypy"
"$VENV/bin/python" -m pytest "$@"
