"""Traffic migration, from the command line (what `make rollout`, `make rollback` and `make traffic` run).

    python -m iris_tools.rollout rollout   [--model NAME | --revision REVISION]
    python -m iris_tools.rollout rollback  (also aborts a running rollout)
    python -m iris_tools.rollout promote   (a rollout waiting at a pause step goes on)
    python -m iris_tools.rollout traffic   [--split "svc=90 lin_svc=10"]
    python -m iris_tools.rollout shadow    [--model NAME | --revision REVISION]

Settings come from the environment (the Makefile passes its variables through):

  TARGET              cloudrun (default: your gcloud configuration) or local (the local Cloud Run)
  SERVICE             the Cloud Run service (default iris)
  IMAGE               image name without tag; MODEL=svc deploys $IMAGE:svc (default iris)
  PROJECT, REGION     passed to gcloud when set (default: the configuration's)
  STEPS               candidate percentages, ending at 100 (default "5 25 50 100"); "pause" after a step
                      holds there until `make promote` (e.g. "5 25 pause 50 100")
  STEP_SECONDS        each step's window (default 10 locally, 600 on Cloud Run)
  MIN_REQUESTS        candidate requests a step needs before it can pass (default 50 locally, 100 on Cloud Run)
  MAX_HOLD_SECONDS    how long a step with too few requests holds before it rolls back (default 3 x STEP_SECONDS)
  MAX_ERROR_RATE      highest candidate 5xx rate (default 0.01)
  MAX_LATENCY_RATIO   a p99 breach is above this many times the stable p99 ... (default 2)
  MIN_LATENCY_DELTA_MS  ... and above the stable p99 by this much (default 5)
  CONFIDENCE          1 - CONFIDENCE is the chance a candidate within the limits is rolled back, shared
                      over the steps (a sequential probability ratio test at every poll; default 0.99)
  MONITORING_DELAY_S  how late figures arrive (default 180 on Cloud Run, where Cloud Monitoring lags; 0 locally)
  METRIC_RESOLUTION_S how coarse figures are in time: a step's first this-many seconds are not judged, so
                      nothing from before the step counts (default 60 on Cloud Run, 2 locally)
  API_TIMEOUT_S       an API call that does not answer in this long has failed (default 60)
  POLL_SECONDS        how often figures are read (default 1 locally, 30 on Cloud Run)
  FORCE=1             roll out a revision (or image) that was rolled back before
  PUBLIC=1            grant allUsers the invoker role when deploying (default: the service keeps its policy;
                      a service is private unless made public)
  SERVICE_ACCOUNT     the candidate's service account (default: the project's default)
  WARMUP_REQUESTS     predictions sent to the candidate's tag URL before its first live step, so its
                      first users and the gate do not meet its cold start (default 20; 0: none)
  MIN_AGREEMENT       gate the first live step on a shadow comparison: the least agreement (0 to 1; default off)
  SHADOW_INPUTS       how many recent stable inputs the shadow replays (default 500)
  SHADOW_FRESHNESS    how far back it reads them (default 1h)

Exit status: 0 done, 3 rolled back, 1 refused or failed (the message says why).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from iris_tools.google.gcloud import Gcloud, GcloudError
from iris_tools.google.monitoring import Monitoring
from iris_tools.google.targets import run_dir
from iris_tools.rollout.errors import EXIT_FAILED, RolloutError
from iris_tools.rollout.promote import promote
from iris_tools.rollout.rollback import rollback
from iris_tools.rollout.service import Service
from iris_tools.rollout.settings import Settings
from iris_tools.rollout.shadow import Shadow
from iris_tools.rollout.traffic import set_split, show
from iris_tools.rollout.walk import Rollout


def report_dir() -> Path:
    return run_dir() / "rollout"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iris_tools.rollout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    rollout = commands.add_parser("rollout")
    rollout.add_argument("--model", default=os.environ.get("MODEL") or None)
    rollout.add_argument("--revision", default=os.environ.get("REVISION") or None)
    commands.add_parser("rollback")
    commands.add_parser("promote")
    traffic = commands.add_parser("traffic")
    traffic.add_argument("--split", default=os.environ.get("SPLIT") or None)
    shadow = commands.add_parser("shadow")
    shadow.add_argument("--model", default=os.environ.get("MODEL") or None)
    shadow.add_argument("--revision", default=os.environ.get("REVISION") or None)
    args = parser.parse_args(argv)
    target = os.environ.get("TARGET") or "cloudrun"
    out = sys.stdout
    try:
        gcloud = Gcloud(target, os.environ.get("PROJECT") or None, os.environ.get("REGION") or None)
        service = Service(gcloud, Settings.for_target(target))
        if args.command in ("rollout", "shadow") and args.model and args.revision:
            raise RolloutError("give MODEL or REVISION, not both")
        if args.command == "rollback":
            return rollback(service, out)
        if args.command == "promote":
            return promote(service, out)
        if args.command == "shadow":
            limit = int(os.environ.get("SHADOW_INPUTS") or 500)
            Shadow(service, out, limit=limit, freshness=os.environ.get("SHADOW_FRESHNESS") or "1h").run(
                args.model, args.revision, run_dir() / "report" / "shadow.json")
            return 0
        monitoring = Monitoring.from_gcloud(gcloud)
        if args.command == "rollout":
            return Rollout(service, monitoring, report_dir(), out).run(args.model, args.revision)
        return set_split(service, monitoring, args.split, out) if args.split else show(service, monitoring, out)
    except (RolloutError, GcloudError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("\ninterrupted: traffic stays as the last step set it; `make traffic` explains, `make rollout` "
              "resumes, `make rollback` undoes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
