"""What operators see: per-stream sync status, Prometheus metrics (both subscribers to the
stream callbacks) and the HTTP endpoint serving them."""
