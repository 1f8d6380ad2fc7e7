"""The control plane: the last good model, a snapshot per node placement compiled from it,
and the watcher that reloads the model files when they change."""
