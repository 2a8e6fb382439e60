"""Errors of the STIX readers."""

from __future__ import annotations


class StixReadError(ValueError):
    """The input cannot be read as STIX or TAXII; the message says why in one line."""


class TaxiiStatusError(StixReadError):
    """The input is a TAXII Status_Message (a server's error answer) rather than content."""

    def __init__(self, status_type: str, message: str) -> None:
        self.status_type = status_type
        self.status_message = message
        text = f"the input is a TAXII Status_Message with status {status_type}"
        super().__init__(f"{text}: {message}" if message else text)

    def __reduce__(self) -> tuple[type[TaxiiStatusError], tuple[str, str]]:
        # Rebuilt from its two fields (a worker process sends it to its parent).
        return (type(self), (self.status_type, self.status_message))
