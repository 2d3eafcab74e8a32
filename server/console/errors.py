"""What the console answers instead of a page: a refusal a person can act on, or "sign in first"."""

from __future__ import annotations


class ConsoleError(Exception):
    """Refuse a console request with ``status`` and a message naming what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class SignInRequired(Exception):
    """The page needs a signed-in user; the answer redirects to the sign-in form and back."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url
