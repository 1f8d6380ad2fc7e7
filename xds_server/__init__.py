"""meshplane's server side: the xDS protocol, its snapshots, admission, observability, the mesh CA,
the control plane that compiles the model, the App Mesh API and store, and the `meshplane` CLI."""
