"""The one error of the xDS server: end a call, or refuse it before it opens, with a gRPC status.

Raised by the resolver (unknown or invalid node), admission (authentication, stream limits),
the SotW and Delta state machines (protocol violations) and the request checks; the servicer
turns it into ``context.abort(code, message)``. A leaf module, so the control plane and
admission can raise it without importing the server.
"""
from __future__ import annotations

import grpc


class StreamError(Exception):
    """Ends (or refuses) an xDS stream with ``code`` and ``message``."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
