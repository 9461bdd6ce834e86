"""OpenAI-shaped errors: every refusal the gateway makes is an `ApiError`.

The body is always `{"error": {"message", "type", "param", "code"}}` with all four keys, which is
what the official SDKs parse into `BadRequestError`, `AuthenticationError`, `RateLimitError`...
"""
from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}
        # An upstream error body passed through as received (e.g. moderation_details kept).
        self._body = body

    def body(self) -> dict[str, Any]:
        if self._body is not None:
            return self._body
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid_request(message: str, *, param: str | None = None, code: str | None = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def invalid_api_key() -> ApiError:
    # Never echo the presented key back, not even masked: it is a customer's secret.
    return ApiError(
        401,
        "Incorrect API key provided. You can find your API key in the platform console.",
        code="invalid_api_key",
    )


def insufficient_quota(message: str) -> ApiError:
    # x-should-retry: false stops the official SDKs from retrying a 429 that cannot succeed.
    return ApiError(
        429, message, type="insufficient_quota", code="insufficient_quota", headers={"x-should-retry": "false"}
    )


def upstream_error(message: str = "The image service returned an invalid response. Please retry.") -> ApiError:
    return ApiError(502, message, type="server_error", code="upstream_error")


def upstream_timeout(seconds: float) -> ApiError:
    return ApiError(
        504,
        f"The image service did not answer within {seconds:.0f} seconds. You have not been charged.",
        type="server_error",
        code="upstream_timeout",
    )
