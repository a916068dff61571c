"""Who may act on the billers' page: a token login gives an in-memory session behind an
HttpOnly, SameSite=Strict cookie (never the token) with a CSRF token its forms carry;
scripts send the token as a bearer. Also the security headers every response gets."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

SESSION_COOKIE = "claimflow_session"
LOGIN_COOKIE = "claimflow_login"  # login CSRF: a random value the login form must echo
SESSION_TTL_S = 8 * 3600.0  # a working day
MAX_SESSIONS = 10_000  # a bound on memory: the oldest session goes first
#: User ids as the events record them: an id, no spaces (not a name). ``engine`` and
#: ``payer:…`` are the engine's and the payer's own actors, never a biller.
USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
RESERVED_USERS = frozenset({"engine"})

#: Failed logins (form or bearer token) a client may make in ``LOGIN_WINDOW_S`` before it
#: waits: a person mistyping is not stopped, a script guessing the token is.
LOGIN_FAILURES_ALLOWED = 5
LOGIN_WINDOW_S = 300.0
MAX_THROTTLED_CLIENTS = 10_000  # a bound on memory: the oldest client goes first

HEADERS = {
    # No software or version for a scanner to match (aiohttp would send its own).
    "Server": "claimflow",
    # No script, no frame, no external anything: the page needs none of it.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",  # claim data: not kept in a shared cache or the back button
}


def local_path(target: str | None) -> str:
    """Where to go after logging in: a path on this site only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@dataclass
class Session:
    """A logged-in biller: who, the CSRF token their forms carry, messages for the next page."""

    user: str
    csrf: str
    expires_at: float
    flash: list[tuple[str, str]] = field(default_factory=list)


class Sessions:
    """In-memory sessions, keyed by a hash of the cookie value (the raw value is not kept)."""

    def __init__(self, ttl_s: float = SESSION_TTL_S, limit: int = MAX_SESSIONS) -> None:
        self.ttl_s, self.limit = ttl_s, limit
        self._by_key: dict[str, Session] = {}

    @staticmethod
    def _key(session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()

    def new(self, user: str) -> tuple[str, Session]:
        now = time.monotonic()
        self._by_key = {k: s for k, s in self._by_key.items() if s.expires_at > now}
        while len(self._by_key) >= self.limit:
            self._by_key.pop(next(iter(self._by_key)))
        session_id = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(32), now + self.ttl_s)
        self._by_key[self._key(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        key = self._key(session_id)
        session = self._by_key.get(key)
        if session is not None and session.expires_at <= time.monotonic():
            del self._by_key[key]
            return None
        return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._by_key.pop(self._key(session_id), None)


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time, on bytes; an empty configured token matches nothing."""
    if not token or given is None:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def valid_user_id(user: str) -> bool:
    return bool(USER_ID.fullmatch(user)) and user.lower() not in RESERVED_USERS


def csrf_matches(given: str, expected: str) -> bool:
    """A form's CSRF token against the one it must echo, in constant time."""
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass
class Actor:
    """Who acts, and their session (None: a script with the bearer token)."""

    user: str
    session: Session | None = None


class LoginThrottle:
    """Failed logins per client address in a sliding window; past ``allowed`` the client
    waits until its oldest failure leaves the window (also with the right token)."""

    def __init__(self, allowed: int = LOGIN_FAILURES_ALLOWED, window_s: float = LOGIN_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic, max_clients: int = MAX_THROTTLED_CLIENTS) -> None:
        self.allowed, self.window_s, self.clock, self.max_clients = allowed, window_s, clock, max_clients
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.get(client, deque())
        while failures and failures[0] <= self.clock() - self.window_s:
            failures.popleft()
        return failures

    def retry_after(self, client: str) -> float:
        """Seconds the client must wait before trying again; 0 when it may try now."""
        failures = self._recent(client)
        if len(failures) < self.allowed:
            return 0.0
        return failures[-self.allowed] + self.window_s - self.clock()

    def failed(self, client: str) -> None:
        failures = self._recent(client)
        failures.append(self.clock())
        self._failures.pop(client, None)
        while len(self._failures) >= self.max_clients:
            self._failures.pop(next(iter(self._failures)))
        self._failures[client] = failures

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


TOKEN = web.AppKey("token", str)
THROTTLE = web.AppKey("login_throttle", LoginThrottle)
SESSIONS = web.AppKey("sessions", Sessions)


def request_session(request: web.Request) -> Session | None:
    """The session of the request's cookie, if it is a live one."""
    return request.app[SESSIONS].get(request.cookies.get(SESSION_COOKIE))


def new_login_csrf(request: web.Request, response: web.StreamResponse) -> str:
    """A fresh login-CSRF value, set as the cookie the login form must echo."""
    value = secrets.token_urlsafe(24)
    response.set_cookie(LOGIN_COOKIE, value, httponly=True, samesite="Strict", path="/login", max_age=3600,
                        secure=request.secure)
    return value


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(HEADERS)
        raise
    response.headers.update(HEADERS)
    return response
