#!/bin/sh
# Entrypoint of the meshplane Envoy sidecar image: write the bootstrap, then exec Envoy.
#
# Identity and control plane:
#   APPMESH_RESOURCE_ARN      required: mesh/<mesh>/virtualNode/<name> (or the full App Mesh ARN,
#                             or .../virtualGateway/<name>); becomes Envoy's node.id and node.cluster
#   MESHPLANE_XDS             required: HOST:PORT of `meshplane serve --xds`
#   MESHPLANE_XDS_CA          optional: talk TLS to meshplane, trusting this CA (PEM file)
#   MESHPLANE_XDS_CERT / MESHPLANE_XDS_KEY   optional client certificate (mTLS)
#   MESHPLANE_XDS_SERVER_NAME optional: name on meshplane's certificate (default: the MESHPLANE_XDS host)
#   MESHPLANE_XDS_TOKEN_FILE  optional: file holding this node's bearer token
#   MESHPLANE_XDS_DELTA       1: incremental (delta) xDS
#   MESHPLANE_BOOTSTRAP_FILE  where the bootstrap is written (default /tmp/envoy.yaml)
# Envoy (the stock App Mesh image's names and defaults):
#   ENVOY_ADMIN_ACCESS_PORT        9901 (admin listens on 0.0.0.0, or [::] with
#   ENVOY_ADMIN_ACCESS_ENABLE_IPV6=1)
#   ENVOY_LOG_LEVEL                info
#   ENVOY_CONCURRENCY              unset (Envoy's default: one worker per CPU)
#   ENVOY_ADMIN_ACCESS_LOG_FILE    /tmp/envoy_admin_access.log
#   ENVOY_INITIAL_FETCH_TIMEOUT    0 (seconds; 0 waits for the control plane forever, as App Mesh)
#   APPMESH_RESOURCE_CLUSTER       node.cluster (names in metrics/traces); default: the node id
# Arguments given to the entrypoint are passed on to Envoy.
#
# Run as root instead of the image's uid 1337 (compose / k8s with NET_ADMIN and no init
# container), it can apply the interception itself (MESHPLANE_ENABLE_IPTABLES=1: envoy/iptables.sh
# start, with the APPMESH_* variables) and then runs Envoy as APPMESH_IGNORE_UID (default 1337),
# the uid the iptables rules exempt; otherwise Envoy's own traffic would loop back to itself.
set -eu

die() { echo "meshplane-entrypoint: $*" >&2; exit 1; }

[ -n "${APPMESH_RESOURCE_ARN:-}" ] || die "APPMESH_RESOURCE_ARN is required (e.g. mesh/shop/virtualNode/front)"
[ -n "${MESHPLANE_XDS:-}" ] || die "MESHPLANE_XDS is required: HOST:PORT of meshplane serve --xds (e.g. meshplane:18000)"

BOOTSTRAP=${MESHPLANE_BOOTSTRAP_FILE:-/tmp/envoy.yaml}
ADMIN_PORT=${ENVOY_ADMIN_ACCESS_PORT:-9901}
ADMIN_HOST=0.0.0.0
[ "${ENVOY_ADMIN_ACCESS_ENABLE_IPV6:-0}" != 1 ] || ADMIN_HOST='[::]'
LOG_LEVEL=${ENVOY_LOG_LEVEL:-info}
ENVOY_UID=${APPMESH_IGNORE_UID:-1337}
ENVOY_GID=${APPMESH_IGNORE_GID:-$ENVOY_UID}
HERE=$(dirname "$0")

# The bootstrap: identity, placement (transparent: 15000/15001, App Mesh's layout), the xDS
# cluster. (A function, so that `set --` leaves the entrypoint's arguments, Envoy's, alone.)
write_bootstrap() {
    set -- bootstrap --node "$APPMESH_RESOURCE_ARN" --xds "$MESHPLANE_XDS" \
        --admin-address "$ADMIN_HOST:$ADMIN_PORT" -o "$BOOTSTRAP"
    [ "${MESHPLANE_XDS_DELTA:-0}" != 1 ] || set -- "$@" --delta
    [ -z "${MESHPLANE_XDS_CA:-}" ] || set -- "$@" --xds-ca "$MESHPLANE_XDS_CA"
    [ -z "${MESHPLANE_XDS_CERT:-}" ] || set -- "$@" --xds-cert "$MESHPLANE_XDS_CERT"
    [ -z "${MESHPLANE_XDS_KEY:-}" ] || set -- "$@" --xds-key "$MESHPLANE_XDS_KEY"
    [ -z "${MESHPLANE_XDS_SERVER_NAME:-}" ] || set -- "$@" --xds-server-name "$MESHPLANE_XDS_SERVER_NAME"
    [ -z "${MESHPLANE_XDS_TOKEN_FILE:-}" ] || set -- "$@" --xds-token-file "$MESHPLANE_XDS_TOKEN_FILE"
    [ -z "${APPMESH_RESOURCE_CLUSTER:-}" ] || set -- "$@" --node-cluster "$APPMESH_RESOURCE_CLUSTER"
    set -- "$@" --admin-access-log "${ENVOY_ADMIN_ACCESS_LOG_FILE:-/tmp/envoy_admin_access.log}"
    set -- "$@" --initial-fetch-timeout "${ENVOY_INITIAL_FETCH_TIMEOUT:-0}"
    meshplane "$@"
}
write_bootstrap

# Envoy's command line: the bootstrap, then whatever the container was given.
[ -z "${ENVOY_CONCURRENCY:-}" ] || set -- --concurrency "$ENVOY_CONCURRENCY" "$@"
set -- envoy -c "$BOOTSTRAP" --log-level "$LOG_LEVEL" --disable-hot-restart "$@"

if [ "$(id -u)" = 0 ]; then
    if [ "${MESHPLANE_ENABLE_IPTABLES:-0}" = 1 ]; then
        sh "$HERE/iptables.sh" start
    fi
    # Envoy must run as the uid the interception rules exempt; it reads the bootstrap (0600 when
    # it holds a token) as that uid.
    chown "$ENVOY_UID:$ENVOY_GID" "$BOOTSTRAP"
    echo "meshplane-entrypoint: $APPMESH_RESOURCE_ARN -> $MESHPLANE_XDS; envoy as uid $ENVOY_UID" >&2
    exec setpriv --reuid="$ENVOY_UID" --regid="$ENVOY_GID" --clear-groups --inh-caps=-all -- "$@"
fi
echo "meshplane-entrypoint: $APPMESH_RESOURCE_ARN -> $MESHPLANE_XDS; envoy as uid $(id -u)" >&2
exec "$@"
