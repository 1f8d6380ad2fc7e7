"""xDS type URLs, and the order in which a change must reach Envoy (make-before-break)."""

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

# Clusters and their endpoints first, then listeners, then the routes that point at clusters:
# a route never names a cluster Envoy does not have yet (Envoy would answer 503 "no
# cluster" for requests routed there until the cluster arrived).
PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)

# Plural names: the sections of ``meshplane render --resources`` output and of golden files.
PLURAL_NAMES = {CLUSTER: "clusters", ENDPOINT: "endpoints", LISTENER: "listeners", ROUTE: "routes", SECRET: "secrets"}
