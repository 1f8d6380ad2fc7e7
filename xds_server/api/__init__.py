"""The App Mesh API (2019-01-25) over a store; see ``service`` for the behaviour and extensions.

Modules: ``operations`` (the operation table from botocore's model), ``parsing`` (requests),
``resources`` (ARNs, answers, native documents), ``validation`` (the would-be model, checked by
meshplane's loader), ``paging`` (limit/nextToken, clientToken digests), ``errors``, ``auth`` (the
authenticator hook), ``batch`` (meshplane's whole-model endpoints), ``service`` (the handlers).
In file mode it reads ``xds_server.store.file_model`` (a read-only store over the loaded model).
"""
from xds_server.api.auth import Anonymous, Authenticator, Caller
from xds_server.api.service import ApiLimits, ApiService, is_api_path

__all__ = ["Anonymous", "ApiLimits", "ApiService", "Authenticator", "Caller", "is_api_path"]
