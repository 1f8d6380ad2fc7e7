#!/bin/sh
# Install the system tools the transparent data-path test needs (tests/test_transparent_netns.py):
#   iptables (+ ip6tables)   App Mesh's interception rules, applied inside a test network namespace
#   ip       (iproute2)      network namespaces and a veth pair
#   setpriv, unshare, mount  (util-linux, mount) run Envoy as uid 1337; a private /etc/hosts
# and the PostgreSQL server the store tests start a throwaway cluster of (harness/postgres.py):
#   postgresql               initdb + postgres under /usr/lib/postgresql/*/bin, unless
#                            MESHPLANE_TEST_POSTGRES names a server to use instead
# Idempotent and quiet: does nothing when every tool is there. Installs with apt-get only when
# something is missing and we are root on a system with apt-get; otherwise says what is missing
# and exits 0, so the test itself fails with the same clear message (it never skips).
set -eu

. "$(dirname "$0")/apt-need.sh"

need iptables iptables
need ip6tables iptables
need ip iproute2
need setpriv util-linux
need unshare util-linux
need mount mount

# PostgreSQL server binaries (Debian keeps them off PATH, in /usr/lib/postgresql/<version>/bin)
have_postgres_server() {
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/postgres" ] && [ -x "$dir/initdb" ] && return 0
    done
    command -v postgres >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1
}
if [ -z "${MESHPLANE_TEST_POSTGRES:-}" ] && ! have_postgres_server; then
    missing_packages="$missing_packages postgresql"
fi

apt_install ensure-test-deps "the transparent data-path test and the PostgreSQL store tests fail without them; or set MESHPLANE_TEST_POSTGRES to a PostgreSQL server"
