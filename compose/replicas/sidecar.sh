#!/bin/sh
# The Envoy sidecar of compose/docker-compose.replicas.yaml: its bootstrap lists every meshplane
# replica (`meshplane bootstrap --xds A --xds B`), so that when the replica holding its ADS
# stream goes away, Envoy opens the next stream to another one and keeps its config meanwhile.
#
# envoy/entrypoint.sh takes a single MESHPLANE_XDS (one --xds); this wrapper writes the
# bootstrap itself from MESHPLANE_XDS_REPLICAS (comma-separated HOST:PORT list) and otherwise
# follows the entrypoint: the same stock variables (APPMESH_RESOURCE_ARN, ENVOY_ADMIN_ACCESS_PORT,
# ENVOY_LOG_LEVEL, ENVOY_INITIAL_FETCH_TIMEOUT, ENVOY_ADMIN_ACCESS_LOG_FILE), and Envoy runs as
# the image's uid 1337, the uid App Mesh's iptables rules exempt.
set -eu

die() { echo "meshplane-replicas-sidecar: $*" >&2; exit 1; }

[ -n "${APPMESH_RESOURCE_ARN:-}" ] || die "APPMESH_RESOURCE_ARN is required (e.g. mesh/shop/virtualNode/front)"
[ -n "${MESHPLANE_XDS_REPLICAS:-}" ] || die "MESHPLANE_XDS_REPLICAS is required: HOST:PORT,HOST:PORT of the replicas"
[ "$(id -u)" != 0 ] || die "run as the image's uid 1337, not root (Envoy's traffic must bypass the interception)"

BOOTSTRAP=${MESHPLANE_BOOTSTRAP_FILE:-/tmp/envoy.yaml}

set -- bootstrap --node "$APPMESH_RESOURCE_ARN" \
    --admin-address "0.0.0.0:${ENVOY_ADMIN_ACCESS_PORT:-9901}" \
    --admin-access-log "${ENVOY_ADMIN_ACCESS_LOG_FILE:-/tmp/envoy_admin_access.log}" \
    --initial-fetch-timeout "${ENVOY_INITIAL_FETCH_TIMEOUT:-0}" -o "$BOOTSTRAP"
old_ifs=$IFS
IFS=,
for address in $MESHPLANE_XDS_REPLICAS; do
    [ -z "$address" ] || set -- "$@" --xds "$address"
done
IFS=$old_ifs
meshplane "$@"

echo "meshplane-replicas-sidecar: $APPMESH_RESOURCE_ARN -> $MESHPLANE_XDS_REPLICAS; envoy as uid $(id -u)" >&2
exec envoy -c "$BOOTSTRAP" --log-level "${ENVOY_LOG_LEVEL:-info}" --disable-hot-restart
