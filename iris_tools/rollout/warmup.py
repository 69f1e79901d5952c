"""Warm-up: predictions sent to a candidate's tag URL before users reach it."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from iris_tools.google.gcloud import GcloudError
from iris_tools.rollout.cloud_run import CloudRunService
from iris_tools.rollout.invoke import ask, example_row

CONCURRENCY = 4


def warm_up(target: CloudRunService, revision: str, count: int, say: Callable[[str], None]) -> None:
    """`count` predictions at the candidate's tag URL, four at a time: its first users do not pay its cold start
    (first connections, first calls), and the gate does not judge a cold start as a fault. Users never see these
    answers; they fall before the first judged window."""
    if count <= 0:
        return
    url = next((t["url"] for t in target.describe()["status"].get("traffic", [])
                if t.get("revisionName") == revision and t.get("url")), None)
    if url is None:
        say(f"{revision} has no tag URL: not warmed up (tag it to warm it up)")
        return
    try:
        token = target.gcloud.identity_token() or None
    except GcloudError as exc:
        say(f"{revision} not warmed up: no identity token to call it with ({exc})")
        return
    row = example_row(url, token)
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        replies = list(pool.map(lambda _: ask(url, row, token, "warm-up"), range(count)))
    failed = [error for *_, error in replies if error]
    slowest = max(round_trip for _, _, round_trip, _ in replies)
    say(f"warmed up {revision} with {count} requests at {url}: {count - len(failed)} answered, slowest "
        f"{slowest:.0f} ms" + (f"; {len(failed)} failed, the first: {failed[0]}" if failed else ""))
