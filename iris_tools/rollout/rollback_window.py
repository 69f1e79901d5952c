"""The rollback window: after a promotion, the revision users left is kept warm for ROLLBACK_WINDOW seconds, so a
`make rollback` in that time meets no cold start; then it is released.

Cloud Run keeps no instance for a revision at 0% (its min instances are fixed in its template, and a service's
are shared by traffic), so the window is kept the way that works on both targets: the revision answers behind a
tag (its own, or `rollback`, added for the window and removed after), and the rollout asks it one prediction
every KEEP_WARM_EVERY_S. A request within every autoscaler window keeps one instance: Knative's KPA keeps it for a
whole stable window (60 s) plus its grace period after the last request, Cloud Run for longer. The window ends
early when the revision serves traffic again (a rollback: nothing left to keep) or on Ctrl-C (the promotion
stands). Either way the tag added is removed, and the revision scales to zero once idle, as any other would.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from iris_tools.google.gcloud import GcloudError
from iris_tools.rollout.cloud_run import CloudRunService, tag_urls
from iris_tools.rollout.invoke import ask, example_row
from iris_tools.rollout.split import Split

KEEP_WARM_EVERY_S = 10.0
ROLLBACK_TAG = "rollback"


def keep_warm(target: CloudRunService, revision: str, window_s: float, say: Callable[[str], None],
              sleep: Callable[[float], None] = time.sleep) -> None:
    """Keep `revision` warm for `window_s` seconds (see the module's docstring); returns when the window ends."""
    if window_s <= 0:
        return
    tagged = False
    try:
        url = tag_urls(target.describe()).get(revision)
        if url is None:
            target.tag(revision, ROLLBACK_TAG)
            tagged = True
            url = tag_urls(target.describe()).get(revision)
        token = target.gcloud.identity_token() or None
        row = example_row(url, token)
        ends = time.time() + window_s
        say(f"rollback window: {revision} is kept warm for {window_s:g} s (ROLLBACK_WINDOW) at {url}: `make "
            f"rollback` until {time.strftime('%H:%M:%S', time.localtime(ends))} meets no cold start. Ctrl-C ends "
            f"the window early; the promotion stands.")
        failures = 0
        while time.time() < ends:
            if Split.of(target.describe()).percent(revision):
                say(f"rollback window: {revision} serves traffic again; nothing left to keep warm")
                return
            *_, error = ask(url, row, token, "rollback-window")
            failures = failures + 1 if error else 0
            if failures == 3:
                say(f"rollback window: {revision} did not answer three times in a row (the last: {error}); a "
                    f"rollback now may meet a cold start")
            sleep(max(0.0, min(KEEP_WARM_EVERY_S, ends - time.time())))
        say(f"rollback window over: {revision} is released (it scales to zero once idle)")
    except KeyboardInterrupt:
        say(f"rollback window ended early: {revision} is released")
    except GcloudError as exc:
        say(f"rollback window not kept: {exc}")
    finally:
        if tagged:
            try:
                target.untag(ROLLBACK_TAG)
            except GcloudError as exc:
                say(f"the tag {ROLLBACK_TAG} could not be removed ({exc}): gcloud run services update-traffic "
                    f"{target.name} --remove-tags {ROLLBACK_TAG}")
