"""Who may label an answer: the holder of the service's feedback key, shown by a signature over the body.

    X-Feedback-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under FEEDBACK_KEY>

(the scheme Stripe's webhooks use). The signature covers the time, so a body captured on its way is refused once it
is more than MAX_SKEW_S old (or that far in the future: a signer's clock may run ahead). During a rotation
FEEDBACK_KEY_PREVIOUS is accepted too, and a header may carry one v1 per key it was signed with. Comparisons take
constant time. The header is not `Authorization`: on a private Cloud Run service that one carries the caller's Google
identity token and Cloud Run's front end consumes it.

With no key configured, /feedback is off (403): the service cannot tell its labeller from anybody else.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

from shared.errors import ConfigError, FeedbackOff, SignatureRefused

HEADER = "X-Feedback-Signature"
ENVIRON_KEY = "HTTP_X_FEEDBACK_SIGNATURE"
MAX_SKEW_S = 300
MIN_KEY_CHARS = 16
_SCHEME = "v1"


def signature(body: bytes, key: str, at: int | None = None) -> str:
    """The header's value for `body` signed with `key` at `at` (now by default)."""
    moment = int(time.time()) if at is None else int(at)
    return f"t={moment},{_SCHEME}={_mac(key, moment, body)}"


def _mac(key: str, moment: int, body: bytes) -> str:
    return hmac.new(key.encode(), f"{moment}.".encode() + body, hashlib.sha256).hexdigest()


def keys_from(environ: Mapping[str, str]) -> tuple[str, ...]:
    """FEEDBACK_KEY and (during a rotation) FEEDBACK_KEY_PREVIOUS, as set; a key shorter than MIN_KEY_CHARS
    refuses to start (`make feedback-key` makes one of 64 hex digits)."""
    keys = []
    for name in ("FEEDBACK_KEY", "FEEDBACK_KEY_PREVIOUS"):
        value = (environ.get(name) or "").strip()
        if not value:
            continue
        if len(value) < MIN_KEY_CHARS:
            raise ConfigError(f"{name}: {len(value)} characters, fewer than {MIN_KEY_CHARS}; make a key with "
                              f"`make feedback-key` (or `python -c 'import secrets; print(secrets.token_hex(32))'`)")
        keys.append(value)
    if keys and not (environ.get("FEEDBACK_KEY") or "").strip():
        raise ConfigError("FEEDBACK_KEY_PREVIOUS is set without FEEDBACK_KEY: a rotation keeps the new key in "
                          "FEEDBACK_KEY and the old one in FEEDBACK_KEY_PREVIOUS")
    return tuple(keys)


def check(header: str | None, body: bytes, keys: Sequence[str], now: float | None = None) -> None:
    """Refuse (SignatureRefused, FeedbackOff) unless `header` signs `body` with one of `keys` within MAX_SKEW_S."""
    if not keys:
        raise FeedbackOff("feedback is off: this service has no FEEDBACK_KEY, so it cannot tell its labeller from "
                          "anyone else; make one (`make feedback-key`) and deploy with --set-env-vars FEEDBACK_KEY=... "
                          "(on Cloud Run: --set-secrets FEEDBACK_KEY=<secret>:latest)")
    if not header:
        raise SignatureRefused(f"{HEADER} is missing: sign the body with the feedback key "
                               f"(t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">; `make sign-feedback`)",
                               field=HEADER)
    moment, given = _parsed(header)
    current = time.time() if now is None else now
    if abs(current - moment) > MAX_SKEW_S:
        raise SignatureRefused(f"{HEADER}: signed at t={moment}, {abs(current - moment):.0f} s from this server's "
                               f"clock, more than the {MAX_SKEW_S} s allowed (a replayed body, or a clock off)",
                               field=HEADER)
    expected = [_mac(key, moment, body).encode() for key in keys]
    matched = False
    for value in given:  # every pair compared, in constant time each: how far a guess matched never shows
        for mac in expected:
            matched |= hmac.compare_digest(value, mac)
    if not matched:
        raise SignatureRefused(f"{HEADER}: the signature does not match this body under the service's feedback "
                               f"key (a different key, or a body changed after signing)", field=HEADER)


def _parsed(header: str) -> tuple[int, list[bytes]]:
    moment: int | None = None
    given: list[bytes] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit() and len(value) <= 12:
            moment = int(value)
        elif name == _SCHEME and value:
            given.append(value.lower().encode("utf-8", "replace"))  # bytes: any text compares, never raises
    if moment is None or not given:
        raise SignatureRefused(f"{HEADER}: expected t=<unix seconds>,v1=<hex>; got {header[:80]!r}", field=HEADER)
    return moment, given[:4]
