#!/bin/sh
# App Mesh's traffic interception for an Envoy sidecar, driven by App Mesh's own variables.
#
#   iptables.sh start    apply the rules (idempotent: running it again leaves one copy)
#   iptables.sh stop     remove them (idempotent)
#   iptables.sh status   print the APPMESH_* chains of the nat table
#   iptables.sh          start when APPMESH_START_ENABLED=1 (the default, as App Mesh's
#                        proxyinit container sets it), otherwise change nothing
#
# Rules (App Mesh user guide, getting-started-ec2 script; proxy-route-manager image):
#   nat OUTPUT     -p tcp -m addrtype ! --dst-type LOCAL -j APPMESH_EGRESS
#   APPMESH_EGRESS: RETURN for the owner uid (and gid), ignored ports, ignored IPs;
#                   everything else: REDIRECT to APPMESH_ENVOY_EGRESS_PORT
#   nat PREROUTING -p tcp -m addrtype ! --src-type LOCAL -j APPMESH_INGRESS
#   APPMESH_INGRESS: -m multiport --dports APPMESH_APP_PORTS -j REDIRECT to APPMESH_ENVOY_INGRESS_PORT
# ip6tables mirrors all of it when APPMESH_ENABLE_IPV6=1.
#
# Variables (App Mesh's names and defaults; a variable set to "" means "none"):
#   APPMESH_IGNORE_UID            1337   uid Envoy runs as: its own traffic is never redirected
#   APPMESH_IGNORE_GID            unset  optional gid, likewise
#   APPMESH_ENVOY_INGRESS_PORT    15000
#   APPMESH_ENVOY_EGRESS_PORT     15001
#   APPMESH_APP_PORTS             unset  comma list of the virtual node's listener ports; only
#                                        these are sent to Envoy inbound (no ingress rules if empty)
#   APPMESH_EGRESS_IGNORED_IP     169.254.169.254,169.254.170.2  (IPv4 and IPv6, comma list)
#   APPMESH_EGRESS_IGNORED_PORTS  unset  comma list; 22 is always added
#   APPMESH_ENABLE_IPV6           0      1: mirror with ip6tables
#   APPMESH_START_ENABLED         1      used when no command is given
#   IPTABLES / IP6TABLES          iptables / ip6tables (e.g. iptables-legacy)
#
# Needs CAP_NET_ADMIN in the network namespace it changes (a pod / task / container's).
set -eu

IPTABLES=${IPTABLES:-iptables}
IP6TABLES=${IP6TABLES:-ip6tables}

APPMESH_IGNORE_UID=${APPMESH_IGNORE_UID-1337}
APPMESH_IGNORE_GID=${APPMESH_IGNORE_GID-}
APPMESH_ENVOY_INGRESS_PORT=${APPMESH_ENVOY_INGRESS_PORT:-15000}
APPMESH_ENVOY_EGRESS_PORT=${APPMESH_ENVOY_EGRESS_PORT:-15001}
APPMESH_APP_PORTS=${APPMESH_APP_PORTS-}
APPMESH_EGRESS_IGNORED_IP=${APPMESH_EGRESS_IGNORED_IP-169.254.169.254,169.254.170.2}
APPMESH_EGRESS_IGNORED_PORTS=${APPMESH_EGRESS_IGNORED_PORTS-}
APPMESH_ENABLE_IPV6=${APPMESH_ENABLE_IPV6:-0}
APPMESH_START_ENABLED=${APPMESH_START_ENABLED:-1}

INGRESS_CHAIN=APPMESH_INGRESS
EGRESS_CHAIN=APPMESH_EGRESS

log() { echo "appmesh-iptables: $*" >&2; }
die() { log "$*"; exit 1; }

# "a, b,,c" -> "a b c"
words() { printf '%s\n' "$1" | tr ',' ' '; }

is_port() {
    case "$1" in
        '' | *[!0-9]*) return 1 ;;
    esac
    [ "$1" -ge 1 ] && [ "$1" -le 65535 ]
}

is_id() {
    case "$1" in
        '' | *[!0-9]*) return 1 ;;
    esac
}

check_ports() { # check_ports NAME "p1 p2 ..."
    for port in $2; do
        is_port "$port" || die "$1: '$port' is not a port (1-65535)"
    done
}

# multiport takes at most 15 ports per rule: print the list as comma-joined groups of 15, one per line
port_groups() {
    printf '%s\n' "$@" | awk 'NF { group = group (n ? "," : "") $1; n++; if (n == 15) { print group; group = ""; n = 0 } }
                             END { if (n) print group }'
}

validate() {
    if [ -z "$APPMESH_IGNORE_UID" ] && [ -z "$APPMESH_IGNORE_GID" ]; then
        die "APPMESH_IGNORE_UID and/or APPMESH_IGNORE_GID must be set: Envoy runs as that uid/gid, and its own traffic must not be redirected back to it"
    fi
    [ -z "$APPMESH_IGNORE_UID" ] || is_id "$APPMESH_IGNORE_UID" || die "APPMESH_IGNORE_UID must be a numeric uid, got '$APPMESH_IGNORE_UID'"
    [ -z "$APPMESH_IGNORE_GID" ] || is_id "$APPMESH_IGNORE_GID" || die "APPMESH_IGNORE_GID must be a numeric gid, got '$APPMESH_IGNORE_GID'"
    is_port "$APPMESH_ENVOY_INGRESS_PORT" || die "APPMESH_ENVOY_INGRESS_PORT must be a port, got '$APPMESH_ENVOY_INGRESS_PORT'"
    is_port "$APPMESH_ENVOY_EGRESS_PORT" || die "APPMESH_ENVOY_EGRESS_PORT must be a port, got '$APPMESH_ENVOY_EGRESS_PORT'"
    check_ports APPMESH_APP_PORTS "$(words "$APPMESH_APP_PORTS")"
    check_ports APPMESH_EGRESS_IGNORED_PORTS "$(words "$APPMESH_EGRESS_IGNORED_PORTS")"
    case "$APPMESH_ENABLE_IPV6" in
        0 | 1) ;;
        *) die "APPMESH_ENABLE_IPV6 must be 0 or 1, got '$APPMESH_ENABLE_IPV6'" ;;
    esac
    for ip in $(words "$APPMESH_EGRESS_IGNORED_IP"); do
        case "$ip" in
            *[!0-9a-fA-F.:/]*) die "APPMESH_EGRESS_IGNORED_IP: '$ip' is not an IP address or CIDR" ;;
        esac
    done
}

# --- one address family at a time: $1 is the iptables command (iptables or ip6tables), $2 4 or 6

nat() { # nat CMD ARGS...: one nat-table command, waiting for the xtables lock
    cmd=$1
    shift
    "$cmd" -w -t nat "$@"
}

chain_exists() { nat "$1" -S "$2" >/dev/null 2>&1; }

ensure_chain() { # ensure_chain CMD CHAIN: an empty chain, created if missing
    if chain_exists "$1" "$2"; then
        nat "$1" -F "$2"
    else
        nat "$1" -N "$2"
    fi
}

ensure_jump() { # ensure_jump CMD HOOK RULE...: append the rule to HOOK unless it is there
    cmd=$1
    hook=$2
    shift 2
    nat "$cmd" -C "$hook" "$@" 2>/dev/null || nat "$cmd" -A "$hook" "$@"
}

remove_jump() { # remove_jump CMD HOOK RULE...: delete every copy of the rule
    cmd=$1
    hook=$2
    shift 2
    while nat "$cmd" -C "$hook" "$@" 2>/dev/null; do
        nat "$cmd" -D "$hook" "$@"
    done
}

EGRESS_JUMP="-p tcp -m addrtype ! --dst-type LOCAL -j $EGRESS_CHAIN"
INGRESS_JUMP="-p tcp -m addrtype ! --src-type LOCAL -j $INGRESS_CHAIN"

remove_family() { # remove_family CMD
    # shellcheck disable=SC2086 # the rule is a list of words
    remove_jump "$1" OUTPUT $EGRESS_JUMP
    # shellcheck disable=SC2086
    remove_jump "$1" PREROUTING $INGRESS_JUMP
    for chain in "$EGRESS_CHAIN" "$INGRESS_CHAIN"; do
        if chain_exists "$1" "$chain"; then
            nat "$1" -F "$chain"
            nat "$1" -X "$chain"
        fi
    done
}

apply_family() { # apply_family CMD FAMILY(4|6)
    cmd=$1
    family=$2

    # Egress: the app's outbound TCP to non-local addresses goes to Envoy's egress listener,
    # except Envoy's own (uid/gid), ignored ports and ignored addresses.
    ensure_chain "$cmd" "$EGRESS_CHAIN"
    [ -z "$APPMESH_IGNORE_UID" ] || nat "$cmd" -A "$EGRESS_CHAIN" -m owner --uid-owner "$APPMESH_IGNORE_UID" -j RETURN
    [ -z "$APPMESH_IGNORE_GID" ] || nat "$cmd" -A "$EGRESS_CHAIN" -m owner --gid-owner "$APPMESH_IGNORE_GID" -j RETURN
    # shellcheck disable=SC2046 # one word per port
    for ports in $(port_groups $(words "$APPMESH_EGRESS_IGNORED_PORTS,22")); do
        nat "$cmd" -A "$EGRESS_CHAIN" -p tcp -m multiport --dports "$ports" -j RETURN
    done
    for ip in $(words "$APPMESH_EGRESS_IGNORED_IP"); do
        case "$ip" in
            *:*) [ "$family" = 6 ] || continue ;;
            *) [ "$family" = 4 ] || continue ;;
        esac
        nat "$cmd" -A "$EGRESS_CHAIN" -p tcp -d "$ip" -j RETURN
    done
    nat "$cmd" -A "$EGRESS_CHAIN" -p tcp -j REDIRECT --to-ports "$APPMESH_ENVOY_EGRESS_PORT"
    # shellcheck disable=SC2086 # the rule is a list of words
    ensure_jump "$cmd" OUTPUT $EGRESS_JUMP

    # Ingress: only the app's listener ports, and only traffic from elsewhere, go to Envoy's
    # ingress listener (its filter chains match the original destination port).
    if [ -n "$(words "$APPMESH_APP_PORTS" | tr -d ' ')" ]; then
        ensure_chain "$cmd" "$INGRESS_CHAIN"
        # shellcheck disable=SC2046 # one word per port
        for ports in $(port_groups $(words "$APPMESH_APP_PORTS")); do
            nat "$cmd" -A "$INGRESS_CHAIN" -p tcp -m multiport --dports "$ports" -j REDIRECT --to-ports "$APPMESH_ENVOY_INGRESS_PORT"
        done
        # shellcheck disable=SC2086
        ensure_jump "$cmd" PREROUTING $INGRESS_JUMP
    else
        # shellcheck disable=SC2086
        remove_jump "$cmd" PREROUTING $INGRESS_JUMP
        if chain_exists "$cmd" "$INGRESS_CHAIN"; then
            nat "$cmd" -F "$INGRESS_CHAIN"
            nat "$cmd" -X "$INGRESS_CHAIN"
        fi
    fi
}

status_family() {
    for chain in PREROUTING OUTPUT "$INGRESS_CHAIN" "$EGRESS_CHAIN"; do
        if chain_exists "$1" "$chain"; then
            nat "$1" -S "$chain"
        fi
    done
}

start() {
    validate
    log "redirecting app ports [${APPMESH_APP_PORTS}] to :$APPMESH_ENVOY_INGRESS_PORT and outbound TCP to :$APPMESH_ENVOY_EGRESS_PORT" \
        "(not uid ${APPMESH_IGNORE_UID:-none} gid ${APPMESH_IGNORE_GID:-none}, ports ${APPMESH_EGRESS_IGNORED_PORTS:+$APPMESH_EGRESS_IGNORED_PORTS,}22," \
        "addresses [${APPMESH_EGRESS_IGNORED_IP}]); IPv6 $APPMESH_ENABLE_IPV6"
    apply_family "$IPTABLES" 4
    if [ "$APPMESH_ENABLE_IPV6" = 1 ]; then
        apply_family "$IP6TABLES" 6
    elif command -v "$IP6TABLES" >/dev/null 2>&1; then
        remove_family "$IP6TABLES" 2>/dev/null || true # IPv6 switched off since the last start
    fi
}

stop() {
    remove_family "$IPTABLES"
    if command -v "$IP6TABLES" >/dev/null 2>&1; then
        if [ "$APPMESH_ENABLE_IPV6" = 1 ]; then
            remove_family "$IP6TABLES"
        else
            remove_family "$IP6TABLES" 2>/dev/null || true
        fi
    fi
    log "interception removed"
}

status() {
    echo "# $IPTABLES -t nat"
    status_family "$IPTABLES"
    if [ "$APPMESH_ENABLE_IPV6" = 1 ]; then
        echo "# $IP6TABLES -t nat"
        status_family "$IP6TABLES"
    fi
}

command -v "$IPTABLES" >/dev/null 2>&1 || die "$IPTABLES not found (Debian: apt-get install iptables)"
if [ "$APPMESH_ENABLE_IPV6" = 1 ]; then
    command -v "$IP6TABLES" >/dev/null 2>&1 || die "$IP6TABLES not found (Debian: apt-get install iptables)"
fi

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    "")
        if [ "$APPMESH_START_ENABLED" = 1 ]; then
            start
        else
            log "APPMESH_START_ENABLED=$APPMESH_START_ENABLED: nothing applied (run '$0 start' to apply)"
        fi
        ;;
    *)
        echo "usage: $0 [start|stop|status]" >&2
        exit 2
        ;;
esac
