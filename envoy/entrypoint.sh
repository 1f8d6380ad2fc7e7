#!/bin/sh
# Entrypoint of the meshplane Envoy sidecar image: write the bootstrap, then run Envoy (draining it on SIGTERM).
#
# Identity and control plane:
#   APPMESH_RESOURCE_ARN      required: mesh/<mesh>/virtualNode/<name> (or the full App Mesh ARN,
#                             or .../virtualGateway/<name>); becomes Envoy's node.id and node.cluster.
#                             Without it: APPMESH_VIRTUAL_NODE_NAME (the EKS injector's
#                             mesh/<mesh>/virtualNode/<name>), then APPMESH_RESOURCE_NAME
#   MESHPLANE_XDS             required: HOST:PORT of `meshplane serve --xds`; replicas comma-separated
#                             (cp-1:18000,cp-2:18000): the xDS cluster lists every one
#   MESHPLANE_XDS_CA          optional: talk TLS to meshplane, trusting this CA (PEM file)
#   MESHPLANE_XDS_CERT / MESHPLANE_XDS_KEY   optional client certificate (mTLS)
#   MESHPLANE_XDS_SERVER_NAME optional: name on meshplane's certificate (default: the MESHPLANE_XDS host)
#   MESHPLANE_XDS_TOKEN_FILE  optional: file holding this node's bearer token
#   MESHPLANE_XDS_DELTA       1: incremental (delta) xDS
#   MESHPLANE_BOOTSTRAP_FILE  where the bootstrap is written (default /tmp/envoy.yaml)
#   MESHPLANE_INGRESS_ADDRESS / MESHPLANE_EGRESS_ADDRESS / MESHPLANE_APP_ADDRESS   optional: the
#                             explicit data path (no iptables: Envoy listens on these addresses,
#                             see `meshplane bootstrap --help`); default App Mesh's 15000/15001
# Envoy (the stock App Mesh image's names and defaults):
#   ENVOY_ADMIN_ACCESS_PORT        9901 (admin listens on 0.0.0.0; with
#   ENVOY_ADMIN_ACCESS_ENABLE_IPV6=1 or true on [::] accepting IPv4 too: 127.0.0.1 and ::1 answer)
#   ENVOY_LOG_LEVEL                info
#   ENVOY_CONCURRENCY              unset (Envoy's default: one worker per CPU)
#   ENVOY_ADMIN_ACCESS_LOG_FILE    /tmp/envoy_admin_access.log
#   ENVOY_INITIAL_FETCH_TIMEOUT    0 (seconds; 0 waits for the control plane forever, as App Mesh)
#   APPMESH_RESOURCE_CLUSTER       node.cluster (names in metrics/traces); default: the node id
#   LISTENER_DRAIN_WAIT_TIME_S     20: on SIGTERM/SIGINT Envoy drains its inbound listeners
#                                  (POST /drain_listeners?graceful&inboundonly, --drain-time-s of
#                                  this value) and is stopped once no connection is left or after
#                                  this many seconds, whichever comes first
# Tracing (one tracer; App Mesh's names and defaults, Zipkin is meshplane's own):
#   ENABLE_ENVOY_XRAY_TRACING=1    X-Ray daemon at 127.0.0.1:XRAY_DAEMON_PORT (2000, UDP);
#                                  XRAY_SAMPLING_RATE (0..1), XRAY_SEGMENT_NAME (mesh/<node>)
#   ENABLE_ENVOY_JAEGER_TRACING=1  JAEGER_TRACER_ADDRESS (127.0.0.1):JAEGER_TRACER_PORT (9411),
#                                  Zipkin-compatible; JAEGER_TRACER_VERSION PROTO|JSON (PROTO)
#   ENABLE_ENVOY_DATADOG_TRACING=1 DATADOG_TRACER_ADDRESS (127.0.0.1):DATADOG_TRACER_PORT (8126);
#                                  DD_SERVICE (envoy-<mesh>/<node>)
#   ENABLE_ENVOY_ZIPKIN_TRACING=1  ZIPKIN_TRACER_ADDRESS (127.0.0.1):ZIPKIN_TRACER_PORT (9411)
#   ENVOY_TRACING_CFG_FILE         a file with `tracing: {http: <provider>}` (+ e.g. its cluster)
# Stats:
#   ENABLE_ENVOY_STATS_TAGS=1      appmesh.mesh, appmesh.virtual_node / appmesh.virtual_gateway tags
#   ENABLE_ENVOY_DOG_STATSD=1      DogStatsD sink: STATSD_ADDRESS (127.0.0.1):STATSD_PORT (8125) UDP,
#                                  or STATSD_SOCKET_PATH (a unix socket)
#   ENVOY_STATS_SINKS_CFG_FILE     a file with `stats_sinks: [...]`, merged into the bootstrap
#   ENVOY_STATS_CONFIG_FILE        a file with `stats_config: {...}`, merged into the bootstrap
#   APPMESH_METRIC_EXTENSION_VERSION  cannot be honoured (App Mesh's proprietary metrics filter):
#                                  the entrypoint says so and goes on without it
#   MESHPLANE_ENTRYPOINT_DRY_RUN=1 write the bootstrap, print Envoy's command line, exit (tests)
# Arguments given to the entrypoint are passed on to Envoy.
#
# Run as root instead of the image's uid 1337 (compose / k8s with NET_ADMIN and no init
# container), it can apply the interception itself (MESHPLANE_ENABLE_IPTABLES=1: envoy/iptables.sh
# start, with the APPMESH_* variables) and then runs Envoy as APPMESH_IGNORE_UID (default 1337),
# the uid the iptables rules exempt; otherwise Envoy's own traffic would loop back to itself.
set -eu

die() { echo "meshplane-entrypoint: $*" >&2; exit 1; }

is_true() { case "${1:-}" in 1|true|TRUE|True|yes) return 0;; *) return 1;; esac; }

NODE_ID=${APPMESH_RESOURCE_ARN:-${APPMESH_VIRTUAL_NODE_NAME:-${APPMESH_RESOURCE_NAME:-}}}
[ -n "$NODE_ID" ] || die "APPMESH_RESOURCE_ARN (or APPMESH_VIRTUAL_NODE_NAME / APPMESH_RESOURCE_NAME) is required (e.g. mesh/shop/virtualNode/front)"
[ -n "${MESHPLANE_XDS:-}" ] || die "MESHPLANE_XDS is required: HOST:PORT of meshplane serve --xds (e.g. meshplane:18000)"

BOOTSTRAP=${MESHPLANE_BOOTSTRAP_FILE:-/tmp/envoy.yaml}
ADMIN_PORT=${ENVOY_ADMIN_ACCESS_PORT:-9901}
ADMIN_HOST=0.0.0.0
# [::] with ipv4_compat (meshplane bootstrap sets it for ::): IPv6 and IPv4 on one socket
! is_true "${ENVOY_ADMIN_ACCESS_ENABLE_IPV6:-0}" || ADMIN_HOST='[::]'
LOG_LEVEL=${ENVOY_LOG_LEVEL:-info}
DRAIN_WAIT=${LISTENER_DRAIN_WAIT_TIME_S:-20}
case "$DRAIN_WAIT" in ''|*[!0-9]*) die "LISTENER_DRAIN_WAIT_TIME_S must be whole seconds, got '$DRAIN_WAIT'";; esac
ENVOY_UID=${APPMESH_IGNORE_UID:-1337}
ENVOY_GID=${APPMESH_IGNORE_GID:-$ENVOY_UID}
HERE=$(dirname "$0")

# The bootstrap: identity, placement (transparent: 15000/15001, App Mesh's layout), the xDS
# cluster. (A function, so that `set --` leaves the entrypoint's arguments, Envoy's, alone.)
write_bootstrap() {
    set -- bootstrap --node "$NODE_ID" --admin-address "$ADMIN_HOST:$ADMIN_PORT" -o "$BOOTSTRAP"
    for replica in $(printf '%s' "$MESHPLANE_XDS" | tr ',' ' '); do
        set -- "$@" --xds "$replica"
    done
    [ "${MESHPLANE_XDS_DELTA:-0}" != 1 ] || set -- "$@" --delta
    [ -z "${MESHPLANE_XDS_CA:-}" ] || set -- "$@" --xds-ca "$MESHPLANE_XDS_CA"
    [ -z "${MESHPLANE_XDS_CERT:-}" ] || set -- "$@" --xds-cert "$MESHPLANE_XDS_CERT"
    [ -z "${MESHPLANE_XDS_KEY:-}" ] || set -- "$@" --xds-key "$MESHPLANE_XDS_KEY"
    [ -z "${MESHPLANE_XDS_SERVER_NAME:-}" ] || set -- "$@" --xds-server-name "$MESHPLANE_XDS_SERVER_NAME"
    [ -z "${MESHPLANE_XDS_TOKEN_FILE:-}" ] || set -- "$@" --xds-token-file "$MESHPLANE_XDS_TOKEN_FILE"
    [ -z "${APPMESH_RESOURCE_CLUSTER:-}" ] || set -- "$@" --node-cluster "$APPMESH_RESOURCE_CLUSTER"
    set -- "$@" --admin-access-log "${ENVOY_ADMIN_ACCESS_LOG_FILE:-/tmp/envoy_admin_access.log}"
    set -- "$@" --initial-fetch-timeout "${ENVOY_INITIAL_FETCH_TIMEOUT:-0}"
    [ -z "${MESHPLANE_INGRESS_ADDRESS:-}" ] || set -- "$@" --ingress-address "$MESHPLANE_INGRESS_ADDRESS"
    [ -z "${MESHPLANE_EGRESS_ADDRESS:-}" ] || set -- "$@" --egress-address "$MESHPLANE_EGRESS_ADDRESS"
    [ -z "${MESHPLANE_APP_ADDRESS:-}" ] || set -- "$@" --app-address "$MESHPLANE_APP_ADDRESS"
    # Tracing: the first enabled tracer (App Mesh's order), or the user's file.
    if is_true "${ENABLE_ENVOY_XRAY_TRACING:-0}"; then
        set -- "$@" --tracing xray --tracing-address "127.0.0.1:${XRAY_DAEMON_PORT:-2000}"
        [ -z "${XRAY_SAMPLING_RATE:-}" ] || set -- "$@" --xray-sampling-rate "$XRAY_SAMPLING_RATE"
        [ -z "${XRAY_SEGMENT_NAME:-}" ] || set -- "$@" --xray-segment-name "$XRAY_SEGMENT_NAME"
    elif is_true "${ENABLE_ENVOY_DATADOG_TRACING:-0}"; then
        set -- "$@" --tracing datadog --tracing-address "${DATADOG_TRACER_ADDRESS:-127.0.0.1}:${DATADOG_TRACER_PORT:-8126}"
        [ -z "${DD_SERVICE:-}" ] || set -- "$@" --datadog-service "$DD_SERVICE"
    elif is_true "${ENABLE_ENVOY_JAEGER_TRACING:-0}"; then
        set -- "$@" --tracing jaeger --tracing-address "${JAEGER_TRACER_ADDRESS:-127.0.0.1}:${JAEGER_TRACER_PORT:-9411}"
        [ -z "${JAEGER_TRACER_VERSION:-}" ] || set -- "$@" --jaeger-version "$JAEGER_TRACER_VERSION"
    elif is_true "${ENABLE_ENVOY_ZIPKIN_TRACING:-0}"; then
        set -- "$@" --tracing zipkin --tracing-address "${ZIPKIN_TRACER_ADDRESS:-127.0.0.1}:${ZIPKIN_TRACER_PORT:-9411}"
    elif [ -n "${ENVOY_TRACING_CFG_FILE:-}" ]; then
        set -- "$@" --tracing-config "$ENVOY_TRACING_CFG_FILE"
    fi
    # Stats.
    ! is_true "${ENABLE_ENVOY_STATS_TAGS:-0}" || set -- "$@" --stats-tags
    if is_true "${ENABLE_ENVOY_DOG_STATSD:-0}"; then
        if [ -n "${STATSD_SOCKET_PATH:-}" ]; then
            set -- "$@" --dogstatsd-socket "$STATSD_SOCKET_PATH"
        else
            set -- "$@" --dogstatsd "${STATSD_ADDRESS:-127.0.0.1}:${STATSD_PORT:-8125}"
        fi
    fi
    [ -z "${ENVOY_STATS_SINKS_CFG_FILE:-}" ] || set -- "$@" --merge "$ENVOY_STATS_SINKS_CFG_FILE"
    [ -z "${ENVOY_STATS_CONFIG_FILE:-}" ] || set -- "$@" --merge "$ENVOY_STATS_CONFIG_FILE"
    meshplane "$@"
}
write_bootstrap

# What cannot be honoured: one line each.
[ -z "${APPMESH_METRIC_EXTENSION_VERSION:-}" ] || [ "$APPMESH_METRIC_EXTENSION_VERSION" = 0 ] || echo "meshplane-entrypoint:" \
    "APPMESH_METRIC_EXTENSION_VERSION=$APPMESH_METRIC_EXTENSION_VERSION ignored: App Mesh's metrics extension is a proprietary" \
    "Envoy filter that is not in open-source Envoy (use ENABLE_ENVOY_STATS_TAGS and a stats sink instead)" >&2

# Envoy's command line: the bootstrap, then whatever the container was given.
[ -z "${ENVOY_CONCURRENCY:-}" ] || set -- --concurrency "$ENVOY_CONCURRENCY" "$@"
set -- envoy -c "$BOOTSTRAP" --log-level "$LOG_LEVEL" --disable-hot-restart --drain-time-s "$DRAIN_WAIT" --drain-strategy immediate "$@"

if [ "$(id -u)" = 0 ]; then
    if [ "${MESHPLANE_ENABLE_IPTABLES:-0}" = 1 ]; then
        sh "$HERE/iptables.sh" start
    fi
    # Envoy must run as the uid the interception rules exempt; it reads the bootstrap (0600 when
    # it holds a token) as that uid.
    chown "$ENVOY_UID:$ENVOY_GID" "$BOOTSTRAP"
    set -- setpriv --reuid="$ENVOY_UID" --regid="$ENVOY_GID" --clear-groups --inh-caps=-all -- "$@"
    echo "meshplane-entrypoint: $NODE_ID -> $MESHPLANE_XDS; envoy as uid $ENVOY_UID" >&2
else
    echo "meshplane-entrypoint: $NODE_ID -> $MESHPLANE_XDS; envoy as uid $(id -u)" >&2
fi
if is_true "${MESHPLANE_ENTRYPOINT_DRY_RUN:-0}"; then
    echo "meshplane-entrypoint: dry run, not starting: $*" >&2
    exit 0
fi

# The admin API from inside the container (admin binds 0.0.0.0 or [::] with IPv4 too).
admin() {  # admin METHOD PATH
    if command -v curl >/dev/null 2>&1; then
        curl -s -m 2 -X "$1" "http://127.0.0.1:$ADMIN_PORT$2"
    else
        python3 -c 'import sys, urllib.request as u; print(u.urlopen(u.Request(sys.argv[2], method=sys.argv[1]), timeout=2).read().decode())' \
            "$1" "http://127.0.0.1:$ADMIN_PORT$2"
    fi
}

# Connections still open on Envoy's listeners (the admin listener aside).
open_connections() {
    admin GET '/stats?filter=downstream_cx_active$' 2>/dev/null \
        | awk -F': ' '/^listener\./ && !/^listener\.admin\./ { n += $2 } END { print n + 0 }'
}

# Envoy runs as a child (not exec'd) so that SIGTERM drains it instead of killing it: inbound
# listeners drain gracefully (new connections refused, open ones closed as requests finish),
# outbound keep working for the app's own shutdown; Envoy is stopped when no connection is left,
# after LISTENER_DRAIN_WAIT_TIME_S at the latest.
ENVOY_PID=
drain_and_stop() {
    trap '' TERM INT
    echo "meshplane-entrypoint: $1: draining inbound listeners, stopping Envoy within ${DRAIN_WAIT}s" >&2
    admin POST '/drain_listeners?graceful&inboundonly' >/dev/null 2>&1 || true
    waited=0
    while [ "$waited" -lt "$DRAIN_WAIT" ] && kill -0 "$ENVOY_PID" 2>/dev/null; do
        sleep 1
        waited=$((waited + 1))
        [ "$(open_connections)" != 0 ] || break
    done
    kill -TERM "$ENVOY_PID" 2>/dev/null || true
    wait "$ENVOY_PID"
    status=$?
    echo "meshplane-entrypoint: Envoy stopped after ${waited}s of drain (exit $status)" >&2
    exit "$status"
}
trap 'drain_and_stop SIGTERM' TERM
trap 'drain_and_stop SIGINT' INT
"$@" &
ENVOY_PID=$!
# `wait` returns early when a trapped signal arrives; the trap then never returns (it exits).
wait "$ENVOY_PID"
exit $?
