#!/usr/bin/env bash
# Installs everything hubswarm needs on a fresh Debian machine (Python >= 3.11, root, no venv).
#   bash scripts/install.sh          the tool, libtorrent (the lab's reference client) and the
#                                    Debian programs the lab uses
#   bash scripts/install.sh --test   also the test and benchmark dependencies (libtorrent, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

# reference: libtorrent's bindings (a PyPI wheel), so that lab compare shows our swarm beside
# the reference client (issue 22); the lab skips it, and says so, where they are missing.
with_tests=""
[ "${1:-}" = "--test" ] && with_tests=1
extras="[reference${with_tests:+,test}]"

# Debian programs: curl, aria2c and nginx are real peers/servers the tests talk to; iproute2 (ip, tc)
# builds the lab's emulated network. Only install what is missing, so a warm machine pays nothing.
need=()
command -v curl >/dev/null || need+=(curl)
command -v ip >/dev/null && command -v tc >/dev/null || need+=(iproute2)
if [ -n "$with_tests" ]; then
  command -v aria2c >/dev/null || need+=(aria2)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
  command -v opentracker >/dev/null || [ -x /usr/bin/opentracker ] || need+=(opentracker)
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || need+=(chromium chromium-driver)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "install.sh: apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "install.sh: missing ${need[*]} and cannot apt-get install them (not root or not Debian)" >&2
    exit 1
  fi
fi

python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".${extras}"
