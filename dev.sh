#!/usr/bin/env bash
# One entry point for a fresh machine: installs what the project needs, then runs a job.
#   ./dev.sh demo [args...]   the main job on the embedded chain
#   ./dev.sh test [pytest args...]   ruff, mypy --strict, import-linter and the whole test suite
# Needs only Python >= 3.11, Node.js/npm and git. Everything else lands in .venv/ and .tools/
# (and, for the tests run as root, Debian's chromium and postgresql from apt-get).
set -euo pipefail
cd "$(dirname "$0")"

SOLCJS_VERSION="0.8.37"
ANVIL_VERSION="1.7.1"
PYTHON="${PYTHON:-python3}"

log() { printf '[dev.sh] %s\n' "$*" >&2; }

ensure_venv() {
  if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
      || { log "Python >= 3.11 is required"; exit 1; }
    log "creating .venv"
    "$PYTHON" -m venv .venv
  fi
  local stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
  if [ ! -f "$stamp" ]; then
    log "installing Python packages (first run only)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[dev]'
    rm -f .venv/.installed-*
    touch "$stamp"
  fi
}

# The Solidity compiler (solcjs, pinned) and anvil come from npm: this machine reaches no other
# binary source. They are needed by the tests only; the demo uses the committed contract artifacts.
ensure_node_tools() {
  local stamp=.tools/.installed-solc-${SOLCJS_VERSION}-anvil-${ANVIL_VERSION}
  if [ ! -f "$stamp" ]; then
    command -v npm >/dev/null || { log "npm is required for the test tools"; exit 1; }
    log "installing solc@${SOLCJS_VERSION} and anvil@${ANVIL_VERSION} from npm (first run only)"
    mkdir -p .tools
    npm install --prefix .tools --no-audit --no-fund --no-save --loglevel=error \
      "solc@${SOLCJS_VERSION}" "@foundry-rs/anvil-linux-amd64@${ANVIL_VERSION}" >/dev/null
    rm -f .tools/.installed-*
    touch "$stamp"
  fi
}

# The console's browser tests drive Debian's chromium (Playwright's own browser download does
# not work here). As root (CI) a missing chromium is installed; elsewhere those tests are
# skipped with the reason printed.
ensure_browser() {
  if [ -n "${JL_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1; then
    return
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's chromium for the browser tests (apt-get, first run only)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        chromium fonts-wqy-microhei; } >/dev/null 2>&1; then
      log "apt-get could not install chromium: the browser tests will be skipped"
    fi
  else
    log "no chromium found (and not root): the browser tests will be skipped"
  fi
}

# The regulator store's PostgreSQL tests start a throwaway cluster with initdb and pg_ctl
# (ledger_node/demo/postgres_cluster.py). As root (CI) a missing PostgreSQL is installed from Debian; the
# test command then requires it (JL_REQUIRE_POSTGRES=1: missing, those tests fail, never skip).
ensure_postgres() {
  if [ -n "${PG_BIN:-}" ] || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    return
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's postgresql for the regulator store's tests (apt-get, first run only)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        postgresql; } >/dev/null 2>&1; then
      log "apt-get could not install postgresql: the PostgreSQL tests will fail"
    fi
  else
    log "no PostgreSQL found (and not root): the PostgreSQL tests will fail; install postgresql"
  fi
}

cmd="${1:-}"
shift || true
case "$cmd" in
  demo)
    ensure_venv
    exec .venv/bin/jointledger demo "$@"
    ;;
  test)
    ensure_venv
    ensure_node_tools
    ensure_browser
    ensure_postgres
    export JL_REQUIRE_POSTGRES=1
    log "ruff"
    .venv/bin/ruff check ledger_node api scripts tests
    log "mypy --strict"
    .venv/bin/mypy ledger_node api
    log "import-linter (the layers of docs/architecture.md)"
    .venv/bin/lint-imports
    log "pytest"
    # parallel workers: most tests wait on real processes and sockets, not on the CPU
    exec .venv/bin/pytest -n "${JL_TEST_WORKERS:-3}" --dist loadfile "$@"
    ;;
  *)
    echo "usage: ./dev.sh demo [args...] | ./dev.sh test [pytest args...]" >&2
    exit 2
    ;;
esac
