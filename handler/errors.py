"""The small error hierarchy; mapped to HTTP and per-event results in ingest.py only."""

from __future__ import annotations


class DestinationError(Exception):
    """Base of every error this service reports to a sender."""

    status_code: int = 400
    retryable: bool = False
    # The cause is ours to fix (the configuration, a secret, a credential), not the event's: it
    # waits for the fix however long it takes, and its failures never count toward MaxAttempts.
    operator: bool = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class RequestRejected(DestinationError):
    """The whole request is unusable (bad body, bad auth, too large)."""

    def __init__(self, message: str, status_code: int, *, code: str) -> None:
        super().__init__(message, code=code)
        self.status_code = status_code


class EventRejected(DestinationError):
    """One event can never be delivered as sent."""

    def __init__(self, message: str, *, code: str = "invalid_event", status_code: int = 400) -> None:
        super().__init__(message, code=code)
        self.status_code = status_code


class ConfigurationError(DestinationError):
    """Our own configuration is missing or invalid: retryable once an operator fixes it."""

    status_code = 500
    retryable = True
    operator = True

    def __init__(self, message: str) -> None:
        super().__init__(message, code="configuration")


class GainsightError(DestinationError):
    """Gainsight refused a call or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        retryable: bool,
        code: str | None = None,
        request_id: str | None = None,
        operator: bool = False,
    ) -> None:
        super().__init__(message, code=code)
        self.status_code = status_code
        self.retryable = retryable
        self.request_id = request_id
        self.operator = operator
