"""Traffic migration, from the command line (what `make rollout`, `make rollback` and `make traffic` run).

    python -m iris_tools.rollout rollout   [--model NAME | --revision REVISION]
    python -m iris_tools.rollout rollback  (also aborts a running rollout)
    python -m iris_tools.rollout promote   (a rollout waiting at a pause step goes on)
    python -m iris_tools.rollout traffic   [--split "svc=90 lin_svc=10"]
    python -m iris_tools.rollout shadow    [--model NAME | --revision REVISION]
    python -m iris_tools.rollout status    (make rollout-status: where a rollout is, foreground or detached)
    python -m iris_tools.rollout job       (a Cloud Run job's task: what `make rollout DETACH=1` starts)

Exit status: 0 done, 3 rolled back, 1 refused or failed (one line on stderr says why and what to do).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial

from iris_tools import environment
from iris_tools.google.gcloud import Gcloud
from iris_tools.google.monitoring import Monitoring
from iris_tools.quality.sources import OutcomeReader, store_for
from iris_tools.rollout.paired import paired_check
from iris_tools.local.state import write_atomically
from iris_tools.rollout.cloud_run import CloudRunService
from iris_tools.rollout.detach import detach
from iris_tools.rollout.job import run_job
from iris_tools.rollout.progress import status
from iris_tools.cli.failures import COMMAND_FAILURES, failed
from iris_tools.rollout.errors import RolloutError
from iris_tools.rollout.events import RecordWriter, Terminal, fan_out
from iris_tools.rollout.notify import Notifier
from iris_tools.rollout.promote import promote
from iris_tools.rollout.rollback import rollback
from iris_tools.rollout.settings import RolloutSettings
from iris_tools.rollout.shadow import Shadow
from iris_tools.rollout.traffic import set_split, show
from iris_tools.rollout.walk import Rollout


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(prog="python -m iris_tools.rollout", formatter_class=argparse.RawDescriptionHelpFormatter,
                                    description=__doc__, epilog="Settings (environment; the Makefile passes its "
                                    "variables through):\n\n" + environment.help_text("target", "rollout", "quality"))
    commands = found.add_subparsers(dest="command", required=True)
    for name in ("rollout", "shadow"):
        command = commands.add_parser(name)
        command.add_argument("--model")
        command.add_argument("--revision")
    commands.add_parser("rollback")
    commands.add_parser("status")
    commands.add_parser("job")
    commands.add_parser("promote")
    commands.add_parser("traffic").add_argument("--split")
    return found


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = sys.stdout
    say = partial(print, file=out, flush=True)
    target = "cloudrun"
    try:
        env = environment.read(os.environ, "rollout", "quality")
        target = env.target
        model = getattr(args, "model", None) or env["MODEL"]
        revision = getattr(args, "revision", None) or env["REVISION"]
        if args.command in ("rollout", "shadow") and model and revision:
            raise RolloutError("give MODEL or REVISION, not both")
        settings = RolloutSettings.from_environment(env)
        if args.command == "job":
            return run_job(env, settings, out)
        gcloud = Gcloud(target, env["PROJECT"], env["REGION"])
        service = CloudRunService(gcloud, settings)
        run_dir = env["RUN_DIR"]
        if args.command == "rollback":
            say(rollback(service).text())
            return 0
        if args.command == "promote":
            say(promote(service).text())
            return 0
        if args.command == "status":
            return status(service, say)
        if args.command == "shadow":
            path = run_dir / "report" / "shadow.json"
            report = Shadow(service, say, limit=settings.shadow_inputs, freshness=settings.shadow_freshness).run(
                model, revision, path)
            if settings.labels:  # and judged on the labelled inputs, as the rollout's paired check at 0% judges
                reader = OutcomeReader(store_for(gcloud, run_dir, env["OUTCOMES_TABLE"]), settings.service,
                                       settings.labels)
                report["paired"] = paired_check(reader, report["stable"], report["candidate_url"],
                                                gcloud.identity_token() or None, settings,
                                                settings.thresholds.alpha_paired, say).as_json()
                write_atomically(path, json.dumps(report, indent=1))
            return 0
        monitoring = Monitoring.from_gcloud(gcloud)
        if args.command == "rollout" and env["DETACH"]:
            def shadow_refuses(revision: str) -> bool:
                return Rollout(service, monitoring, run_dir / "rollout", Terminal(out)).shadow_refuses_revision(
                    revision)
            return detach(env, gcloud, service, model, revision, say, dict(os.environ), shadow_refuses)
        if args.command == "rollout":
            report_dir = run_dir / "rollout"
            writer = RecordWriter(report_dir, say)
            reporters: list = [writer, Terminal(out)]
            if env["NOTIFY_URL"]:
                reporters.append(Notifier(env["NOTIFY_URL"], writer.noted,
                                          console=f"http://127.0.0.1:{environment.value('CONSOLE_PORT')}/"))
            emit = fan_out(*reporters)
            outcomes = (OutcomeReader(store_for(gcloud, run_dir, env["OUTCOMES_TABLE"]), settings.service,
                                      settings.labels) if settings.labels else None)
            return Rollout(service, monitoring, report_dir, emit, outcomes).run(model, revision)
        split = args.split or env["SPLIT"]
        if split:
            set_split(service, split)
        show(service, monitoring, out)
        return 0
    except COMMAND_FAILURES as exc:
        return failed(exc, target)
    except KeyboardInterrupt:
        print("\ninterrupted: traffic stays as the last step set it; `make traffic` explains, `make rollout` "
              "resumes, `make rollback` undoes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
