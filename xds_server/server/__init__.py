"""The xDS protocol: SotW and Delta state machines, the grpc.aio ADS servicer, CSDS, stream
callbacks and the one error type. Knows snapshots, not the model or the control plane."""
