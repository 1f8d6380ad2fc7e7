"""Snapshots (content-addressed per-node Envoy resources by type URL) and the cache that holds
them per key and wakes the streams watching a key when it changes."""
