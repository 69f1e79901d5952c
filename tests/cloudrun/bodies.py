"""Bodies a client gets wrong, sent through a local Cloud Run URL, and what each must get back.

Each sender makes one request and returns what came back: the status (0 when the client left before any answer,
as it meant to) and the body's `code`. `abuse` sends every kind `times` times from a few threads, beside the
other clients' load, and counts the answers by kind. The helpers serve tests/cloudrun/test_bodies.py (process
runtime) and tests/system/test_containers.py (docker runtime)."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import requests

MB = 1024 * 1024
# A body of `size` bytes that is JSON as far as it goes (its start is what the handler would parse).
_FILL = b'{"instances": [' + b"[5.8, 3.4], " * (MB // 12)


def json_bytes(size: int) -> bytes:
    body = _FILL * (size // len(_FILL) + 1)
    return body[:size]


def _answer(response: requests.Response) -> tuple[int, str]:
    try:
        return response.status_code, str(response.json().get("code"))
    except ValueError:
        return response.status_code, response.text[:80]


def oversized(url: str, path: str, size: int) -> tuple[int, str]:
    """A body of `size` bytes with its Content-Length, sent whole before the answer is read."""
    return _answer(requests.post(url + path, data=json_bytes(size), timeout=60,
                                 headers={"Content-Type": "application/json"}))


def announced(url: str, path: str, size: int) -> tuple[int, str]:
    """A body of `size` bytes announced as curl announces a large one (`Expect: 100-continue`): the answer is
    read before any of the body is sent, and a refusal ends it there."""
    return _raw(url, head(url, path, size, expect=True), [])


def chunked(url: str, path: str, size: int) -> tuple[int, str]:
    """The same, chunked (no Content-Length): only reading tells its size."""
    def pieces() -> Iterator[bytes]:
        body = json_bytes(size)
        for start in range(0, size, MB):
            yield body[start:start + MB]

    return _answer(requests.post(url + path, data=pieces(), timeout=60, headers={"Content-Type": "application/json"}))


def _raw(url: str, head: bytes, parts: list[bytes], pause_s: float = 0.0, leave: bool = False) -> tuple[int, str]:
    """One request written by hand on its own connection: `head`, then `parts` with `pause_s` between them.
    `leave`: the client closes the connection after the parts and reads nothing (status 0)."""
    address = urllib.parse.urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(head)
        for number, part in enumerate(parts):
            if number and pause_s:
                time.sleep(pause_s)
            connection.sendall(part)
        if leave:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return 0, "left"
        status, body = read_answer(connection.makefile("rb"))
    return status, str(body.get("code")) if isinstance(body, dict) else body


def read_answer(stream) -> tuple[int, dict | str]:
    """The first final answer on `stream` (a 100 Continue is skipped): its status and its JSON body (or the
    start of a body that is not JSON)."""
    while True:
        status_line = stream.readline()
        if not status_line:
            return -1, "no answer"  # a client that waited and got nothing: a lost request
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        for line in iter(stream.readline, b"\r\n"):
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if status >= 200:
            break
    body = stream.read(length)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body[:80].decode(errors="replace")


def head(url: str, path: str, length: int, close: bool = True, expect: bool = False) -> bytes:
    host = urllib.parse.urlsplit(url).netloc
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json", f"Content-Length: {length}"]
    lines += ["Connection: close"] if close else []
    lines += ["Expect: 100-continue"] if expect else []
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def slow(url: str) -> tuple[int, str]:
    """A whole, valid body sent in three parts 0.2 s apart: it is answered as any other."""
    body = b'{"instances": [[5.8, 3.4]]}'
    return _raw(url, head(url, "/", len(body)), [body[:9], body[9:18], body[18:]], pause_s=0.2)


def truncated(url: str) -> tuple[int, str]:
    """Half the declared body, then the client leaves (its Content-Length promised more)."""
    body = json_bytes(2000)
    return _raw(url, head(url, "/", len(body)), [body[:1000]], leave=True)


def left_mid_body(url: str) -> tuple[int, str]:
    """A 6 MB body declared (over the limit), 1 MB of it sent, then the client leaves."""
    body = json_bytes(6 * MB)
    return _raw(url, head(url, "/feedback", len(body)), [body[:MB]], leave=True)


def lying_length(url: str) -> tuple[int, str]:
    """A Content-Length shorter than the body: the handler reads what was declared (not JSON: a 400); what
    follows is no request, and Envoy refuses it as such."""
    body = b'{"instances": [[5.8, 3.4]]}'
    return _raw(url, head(url, "/", 10, close=False), [body])


def kinds(url: str) -> dict[str, tuple[Callable[[], tuple[int, str]], set[tuple[int, str]]]]:
    """Each kind of body: its sender, and the answers it may get."""
    too_large = {(413, "payload_too_large")}
    return {
        "6 MB to /": (lambda: oversized(url, "/", 6 * MB), too_large),
        "6 MB to /feedback": (lambda: oversized(url, "/feedback", 6 * MB), too_large),
        "6 MB to /v2/models/svc/infer": (lambda: oversized(url, "/v2/models/svc/infer", 6 * MB), too_large),
        "50 MB to / (Expect: 100-continue)": (lambda: announced(url, "/", 50 * MB), too_large),
        "6 MB chunked to /": (lambda: chunked(url, "/", 6 * MB), too_large),
        "slow": (lambda: slow(url), {(200, "None")}),
        "truncated, client left": (lambda: truncated(url), {(0, "left")}),
        "6 MB, client left mid-body": (lambda: left_mid_body(url), {(0, "left")}),
        "Content-Length shorter than the body": (lambda: lying_length(url), {(400, "malformed_json")}),
    }


def abuse(url: str, times: int, threads: int = 4) -> dict[str, Counter]:
    """Every kind `times` times, kinds interleaved, from `threads` threads: kind -> Counter of answers."""
    senders = kinds(url)
    jobs = [name for _ in range(times) for name in senders]

    def one(name: str) -> tuple[str, tuple[int, str]]:
        try:
            return name, senders[name][0]()
        except (requests.RequestException, OSError) as exc:
            return name, (-1, f"{type(exc).__name__}: {exc}"[:120])

    answers: dict[str, Counter] = {name: Counter() for name in senders}
    with ThreadPoolExecutor(threads) as pool:
        for name, answer in pool.map(one, jobs):
            answers[name][answer] += 1
    return answers


def unexpected(answers: dict[str, Counter], url: str) -> dict[str, Counter]:
    """The answers no kind may get: any 5xx, a lost request, or a status other than its own."""
    allowed = {name: expected for name, (_, expected) in kinds(url).items()}
    return {name: Counter({answer: n for answer, n in counted.items() if answer not in allowed[name]})
            for name, counted in answers.items() if any(answer not in allowed[name] for answer in counted)}
