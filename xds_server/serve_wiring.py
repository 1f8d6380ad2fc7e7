"""How ``meshplane serve`` assembles the API and the model source from its ``ServeConfig``:
with ``--store``, the model comes from the store (``StoreSource``) and the API writes to it;
in file mode, the API reads the control plane's model and refuses writes."""
from __future__ import annotations

import logging

from xds_server.api.auth import Anonymous, Authenticator
from xds_server.api.service import ApiLimits, ApiService
from xds_server.store.file_model import FILE_MODE_MESSAGE, ModelSource


def model_source(config):
    """The control plane's model source for ``config`` (``None``: the files of ``config.paths``)."""
    if not getattr(config, "store", None):
        return None
    from xds_server.controlplane.store_source import StoreSource
    from xds_server.store import open_store

    return StoreSource(open_store(config.store))


log = logging.getLogger("meshplane.api")

NO_CREDENTIALS_WARNING = ("App Mesh API without --api-credentials: unsigned requests are accepted from loopback "
                          "(127.0.0.1, ::1) only, as account 111122223333 with every right; configure "
                          "--api-credentials FILE to serve other hosts with SigV4-signed requests")


def authenticator(config) -> Authenticator:
    """``--api-credentials FILE`` -> SigV4 (``sigv4_auth``); without it: loopback only
    (``local_auth``), with one warning line. Raises ``ValueError`` for an unusable file."""
    path = getattr(config, "api_credentials", None)
    if path:
        from xds_server.api.sigv4_auth import SigV4Authenticator

        auth = SigV4Authenticator.from_file(path)
        log.info("App Mesh API: SigV4 signatures required, %d access key(s) from %s",
                 len(auth.verifier.credentials), path)
        return auth
    from xds_server.api.local_auth import LoopbackOnly

    log.warning(NO_CREDENTIALS_WARNING)
    return LoopbackOnly()


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
