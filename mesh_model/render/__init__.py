"""Whole Envoy configuration files: the dynamic bootstrap of a sidecar, and the static
bootstrap that holds a node's compiled resources inline (``meshplane render``)."""
from mesh_model.render.bootstrap import XdsTls, dump_yaml, dynamic_bootstrap, resources_document, split_host_port, static_bootstrap

__all__ = ["XdsTls", "dump_yaml", "dynamic_bootstrap", "resources_document", "split_host_port", "static_bootstrap"]
