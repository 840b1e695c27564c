"""The API's error: the HTTP status and message the real Toxiproxy answers with."""

from __future__ import annotations


class ApiError(Exception):
    """An API failure with the HTTP status the real Toxiproxy answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_body(detail: str) -> ApiError:
    return ApiError(400, f"bad request body: {detail}")
