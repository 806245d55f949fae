"""The exceptions mlyexport raises: every one is an :class:`Error`."""

from __future__ import annotations

__all__ = ["Error", "TokenError", "ApiError", "ListingError", "ConfigError"]


class Error(Exception):
    """Base class of every error mlyexport raises; the message names the bad value and the fix."""


class TokenError(Error):
    """No usable access token, or the API refused it (the token itself is never shown)."""


class ApiError(Error):
    """The Mapillary API failed or refused a request after the retries."""


class ListingError(Error):
    """A listing could not be completed (e.g. the API kept failing for an area)."""


class ConfigError(Error, ValueError):
    """An argument is not acceptable (the same checks and messages as the ``mlyexport`` CLI)."""
