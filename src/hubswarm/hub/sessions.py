"""Browser sessions of the hub: a token entered once becomes a session cookie.

The cookie holds a random session id (256 bits); the server keeps, per session, the SHA-256 of
the token it was opened with (so revoking the token ends the session on its next request: the
record is looked up again each time), a CSRF token the page sends back in ``X-CSRF-Token`` on
every state-changing request, and an expiry. Sessions live in memory only: a restarted hub asks
people to sign in again. Memory is bounded (HUB_MAX_SESSIONS; the oldest goes first).

The cookie is ``HttpOnly`` (scripts cannot read it), ``SameSite=Strict`` (no other site's page
sends it) and ``Secure`` under TLS. The CSRF token is a second line of defence for browsers
that ignore SameSite; API clients using ``Authorization: Bearer`` need neither.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from hubswarm.limits import HUB_MAX_SESSIONS, HUB_SESSION_TTL

COOKIE = "hubswarm_session"
CSRF_HEADER = "X-CSRF-Token"
# 256-bit session ids and CSRF tokens, as the hub's own tokens (auth._TOKEN_BYTES).
_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in browser."""

    token_sha256: str
    csrf: str
    expires: float  # Clock.now time

    def csrf_ok(self, presented: str | None) -> bool:
        """Does the request's CSRF token match (constant-time)?"""
        return presented is not None and hmac.compare_digest(
            presented.encode("utf-8", "surrogateescape"), self.csrf.encode("ascii")
        )


def _key(session_id: str) -> str:
    # Only a hash of the id is kept as the key: a memory dump does not hand out live cookies.
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).hexdigest()


class SessionStore:
    """Sessions by (hashed) id; the caller passes ``now`` (the hub's Clock.now)."""

    def __init__(self, *, ttl: float = HUB_SESSION_TTL, max_sessions: int = HUB_MAX_SESSIONS):
        self.ttl = ttl
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, token_sha256: str, now: float) -> tuple[str, Session]:
        """Open a session for the token with this hash; return (cookie value, session)."""
        session_id = secrets.token_urlsafe(_SECRET_BYTES)
        session = Session(token_sha256, secrets.token_urlsafe(_SECRET_BYTES), now + self.ttl)
        self._sessions[_key(session_id)] = session
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None, now: float) -> Session | None:
        """The live session of a cookie value, or None (unknown, expired: then forgotten)."""
        if not session_id:
            return None
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires <= now:
            del self._sessions[key]
            return None
        return session

    def drop(self, session_id: str | None) -> None:
        """Sign out: forget the session (nothing if unknown)."""
        if session_id:
            self._sessions.pop(_key(session_id), None)

    def drop_token(self, token_sha256: str) -> None:
        """Forget every session of a token (it was revoked)."""
        for key in [k for k, s in self._sessions.items() if s.token_sha256 == token_sha256]:
            del self._sessions[key]
