"""meshplane control plane: snapshots, ADS streams, status, the `meshplane` CLI."""
