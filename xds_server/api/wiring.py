"""How ``meshplane serve`` assembles the API and the model source from its ``ServeConfig``:
with ``--store``, the model comes from the store (``StoreSource``) and the API writes to it;
in file mode, the API reads the control plane's model and refuses writes."""
from __future__ import annotations

from xds_server.api.auth import Anonymous, Authenticator
from xds_server.api.file_source import FILE_MODE_MESSAGE, ModelSource
from xds_server.api.service import ApiLimits, ApiService


def model_source(config):
    """The control plane's model source for ``config`` (``None``: the files of ``config.paths``)."""
    if not getattr(config, "store", None):
        return None
    from xds_server.controlplane.store_source import StoreSource
    from xds_server.store import open_store

    return StoreSource(open_store(config.store))


def api_service(config, control, source, authenticator: Authenticator | None = None) -> ApiService:
    region = getattr(config, "region", "us-west-2")
    auth = authenticator or Anonymous()
    defaults = ApiLimits()
    limits = ApiLimits(meshes=getattr(config, "api_max_meshes", defaults.meshes),
                       resources_per_mesh=getattr(config, "api_max_resources_per_mesh", defaults.resources_per_mesh))
    if source is not None:
        return ApiService(source.store, region=region, authenticator=auth, limits=limits)
    files = ModelSource(lambda: control.model, lambda: control.reloads)
    return ApiService(files, region=region, authenticator=auth, read_only=FILE_MODE_MESSAGE)


def close(source) -> None:
    if source is not None:
        source.store.close()
