# Shared helpers for scripts/run.sh and scripts/test.sh (sourced, not run).
VENV="${MAILBRIDGE_VENV:-.venv}"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=""
ensure_debian_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "Installing Debian packages: ${missing[*]}"
    if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

ensure_venv() {
  local py="${PYTHON:-python3}"
  if ! command -v "$py" >/dev/null; then
    ensure_debian_packages python3
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$py" -m venv "$VENV" >/dev/null 2>&1; then
      rm -rf "$VENV"
      ensure_debian_packages python3-venv
      "$py" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  fi
}

# Redis on 127.0.0.1:6379 for the tests of several instances (started when nothing answers there).
ensure_redis() {
  if (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then return 0; fi
  local dir="${MAILBRIDGE_REDIS_DIR:-/var/lib/redis}" logdir="${MAILBRIDGE_REDIS_LOGDIR:-/var/log/redis}"
  if [ ! -w "$(dirname "$dir")" ] && [ ! -w "$dir" ]; then dir="${TMPDIR:-/tmp}/mailbridge-redis"; logdir="$dir"; fi
  mkdir -p "$dir" "$logdir"
  echo "Starting Redis on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir "$dir" --logfile "$logdir/ci.log"
}
