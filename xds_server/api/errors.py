"""App Mesh errors as App Mesh sends them: ``x-amzn-ErrorType`` header, ``{"message": ...}`` body,
the HTTP status of the error shape in botocore's model (400, 403, 404, 409, ...)."""
from __future__ import annotations

import json
import uuid

# fallback statuses (the model's error shapes are the source: operations.error_status)
_STATUS = {
    "BadRequestException": 400,
    "ForbiddenException": 403,
    "NotFoundException": 404,
    "ConflictException": 409,
    "ResourceInUseException": 409,
    "LimitExceededException": 400,
    "TooManyTagsException": 400,
    "TooManyRequestsException": 429,
    "InternalServerErrorException": 500,
    "ServiceUnavailableException": 503,
}


class ApiError(Exception):
    """An App Mesh error answer. ``code`` is the error shape name (``NotFoundException``)."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or _status(code)


def _status(code: str) -> int:
    if code in _STATUS:
        return _STATUS[code]
    from xds_server.api.operations import error_status

    return error_status(code) or 400


def bad_request(messages: list[str] | str) -> ApiError:
    if isinstance(messages, str):
        return ApiError("BadRequestException", messages)
    if len(messages) == 1:
        return ApiError("BadRequestException", messages[0])
    return ApiError("BadRequestException", f"{len(messages)} problems: " + "; ".join(messages))


def not_found(message: str) -> ApiError:
    return ApiError("NotFoundException", message)


def conflict(message: str) -> ApiError:
    return ApiError("ConflictException", message)


def forbidden(message: str) -> ApiError:
    return ApiError("ForbiddenException", message)


def in_use(message: str) -> ApiError:
    return ApiError("ResourceInUseException", message)


def error_response(err: ApiError, request_id: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {
        "Content-Type": "application/json",
        "x-amzn-ErrorType": f"{err.code}:",
        "x-amzn-RequestId": request_id or str(uuid.uuid4()),
    }
    return err.status, headers, json.dumps({"message": err.message}).encode()
