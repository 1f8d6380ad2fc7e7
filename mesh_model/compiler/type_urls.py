"""xDS type URLs, and the order in which a change must reach Envoy (make-before-break)."""

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

# Clusters and their endpoints first, then listeners, then the routes that point at clusters:
# a route never names a cluster Envoy does not have yet (xds-control-planes.md §1 E25).
PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)

# Short names used in status output, CLI output and golden files.
SHORT_NAMES = {CLUSTER: "clusters", ENDPOINT: "endpoints", LISTENER: "listeners", ROUTE: "routes", SECRET: "secrets"}
