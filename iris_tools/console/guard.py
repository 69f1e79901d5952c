"""Who may ask the console to change anything: only its own page.

The console listens on 127.0.0.1, but any web page the user opens can make their browser send requests there.
Three checks keep those out:

- the Host header must name the console's own address (127.0.0.1:<port> or localhost:<port>), so a DNS-rebound
  name cannot read or act through it;
- a state-changing request must carry the page's token (X-Console-Token, made at start and written only into the
  page, which another origin cannot read) and a JSON body (a cross-origin form cannot send one without a
  preflight, which is refused);
- and when the browser says where a request comes from (Origin, Sec-Fetch-Site), it must be this origin.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from iris_tools.console.errors import Forbidden

TOKEN_HEADER = "X-Console-Token"


def allowed_hosts(port: int) -> set[str]:
    return {f"127.0.0.1:{port}", f"localhost:{port}"}


def check_host(headers: Mapping[str, str], port: int) -> None:
    host = headers.get("Host", "")
    if host not in allowed_hosts(port):
        raise Forbidden(f"the console answers only at http://127.0.0.1:{port}/ (Host {host!r} refused)")


def check_change(headers: Mapping[str, str], port: int, token: str) -> None:
    """Refuse a state-changing request that is not from the console's own page."""
    origin = headers.get("Origin")
    if origin is not None and origin not in {f"http://{host}" for host in allowed_hosts(port)}:
        raise Forbidden(f"a change from origin {origin!r} is refused: only the console's own page may change traffic")
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden(f"a change from a {site} page is refused: only the console's own page may change traffic")
    if not hmac.compare_digest(headers.get(TOKEN_HEADER, "").encode(), token.encode()):
        raise Forbidden(f"a change without the page's {TOKEN_HEADER} is refused: reload the console's page")
    if (headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
        raise Forbidden("a change must be sent as application/json")
