"""The dashboard's own exceptions (answered by its handlers in `services.ui.router`)."""

from __future__ import annotations


class LoginRequired(Exception):
    """A dashboard page asked for without a valid session: the answer is the login form."""
