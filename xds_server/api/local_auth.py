"""``meshplane serve`` without ``--api-credentials``: unsigned requests, accepted from loopback
peers only (127.0.0.0/8, ::1), as account ``111122223333`` allowed every mesh. A request from
any other address is refused (HTTP 403, ``ForbiddenException``) with a message that says to
configure ``--api-credentials``; ``xds_server.serve_wiring.authenticator`` logs a warning at start."""
from __future__ import annotations

import ipaddress

from xds_server.api.auth import DEFAULT_ACCOUNT, Anonymous, Caller, Request
from xds_server.api.errors import forbidden

NOT_LOOPBACK = ("this meshplane API has no --api-credentials, so it accepts unsigned requests from loopback "
                "(127.0.0.1, ::1) only, and {peer} is not; configure `meshplane serve --api-credentials FILE` "
                "and sign requests with one of its access keys (the AWS CLI, boto3 and Terraform do)")


def is_loopback(peer: str | None) -> bool:
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


class LoopbackOnly(Anonymous):
    accounts = True  # one account owns everything; sharing tags are still validated and kept

    def __init__(self, account: str = DEFAULT_ACCOUNT):
        super().__init__(account)

    def authenticate(self, request: Request) -> Caller:
        if not is_loopback(request.peer):
            raise forbidden(NOT_LOOPBACK.format(peer=request.peer or "an unknown peer"))
        return Caller(self.account)
