"""Judge model versions by their answers.

    python -m iris_tools.quality outcomes   per revision of SERVICE: accuracy with its interval, recall per class,
                                            confusion, label coverage and delay, and the prediction mix with its
                                            two-sample test (writes RUN_DIR/report/outcomes.json)
    python -m iris_tools.quality sink       on Cloud Run: a Cloud Logging sink routing SERVICE's prediction and
                                            feedback lines to BigQuery (OUTCOMES_TABLE), with its dataset and grant
    python -m iris_tools.quality load       a labelled load on LOAD_URL: iris points with jitter, their true labels
                                            posted to /feedback after LABEL_DELAY_S (writes a record of it)
    python -m iris_tools.quality feedback-key [--rotate]
                                            the key labels are signed with: made once under RUN_DIR and printed,
                                            with the flag a deploy takes (--rotate: a new one, the old kept as
                                            FEEDBACK_KEY_PREVIOUS until every revision has the new one)
    python -m iris_tools.quality sign [BODY]  the X-Feedback-Signature header for BODY (the argument or the BODY
                                            variable: a JSON text; - reads stdin),
                                            and the curl command that posts it to LOAD_URL (or localhost:5001)

Exit status: 0 done, 1 refused or failed (one line on stderr says why).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from iris_tools import environment
from iris_tools.cli.failures import COMMAND_FAILURES, EXIT_FAILED, ToolError, failed
from iris_tools.cli.tables import table
from iris_tools.google.gcloud import Gcloud
from iris_tools.local.state import write_atomically
from iris_tools.local.feedback_key import current_key, key_path, make_key
from iris_tools.quality.outcomes import Outcomes, mix_shift, value_shift
from iris_tools.quality.sink import create_sink
from iris_tools.quality.rehearsal import LabelledLoad, labelled_rows
from iris_tools.quality.sources import OutcomeReader, since, store_for
from shared.feedback_signature import HEADER, signature


def labels_line(outcomes: Outcomes) -> str:
    """What the look read of the labels: each answer's first label counts; a later one is a conflict."""
    return (f"{outcomes.labels} labels read, {outcomes.conflicts} conflicts (a later label for an answer already "
            f"labelled: counted, never judged), {outcomes.unmatched} matching no prediction")


def regression_text(outcomes: Outcomes) -> str:
    """A regressor's outcomes: each revision's mean absolute error with its interval, and its predicted values."""
    rows = [["revision", "predictions", "labelled", "coverage", "MAE", "95% interval", "label delay p50",
             "predicted p10 / p50 / p90"]]
    for name, o in outcomes.revisions.items():
        interval = o.mae_interval()
        quantiles = o.value_quantiles()
        rows.append([name, str(o.predictions), str(o.labelled), "-" if o.coverage is None else f"{100 * o.coverage:.0f}%",
                     "-" if o.mae is None else f"{o.mae:.6g}",
                     "-" if interval is None else f"{interval[0]:.6g} to {interval[1]:.6g}",
                     "-" if o.delay()["p50_s"] is None else f"{o.delay()['p50_s']:g} s",
                     " / ".join(f"{quantiles[q]:.6g}" for q in ("p10", "p50", "p90"))])
    return "\n".join([table(rows), labels_line(outcomes)])


def outcomes_text(outcomes: Outcomes) -> str:
    if any(o.regression for o in outcomes.revisions.values()):
        return regression_text(outcomes)
    rows = [["revision", "predictions", "labelled", "coverage", "accuracy", "95% interval", "label delay p50",
             "mix"]]
    for name, o in outcomes.revisions.items():
        low, high = o.interval
        rows.append([name, str(o.predictions), str(o.labelled), "-" if o.coverage is None else f"{100 * o.coverage:.0f}%",
                     "-" if o.accuracy is None else f"{100 * o.accuracy:.1f}%",
                     f"{100 * low:.1f}% to {100 * high:.1f}%" if o.labelled else "-",
                     "-" if o.delay()["p50_s"] is None else f"{o.delay()['p50_s']:g} s",
                     ", ".join(f"{c} {n}" for c, n in sorted(o.mix.items()))])
    lines = [table(rows), labels_line(outcomes)]
    for name, o in outcomes.revisions.items():
        if o.labelled:
            recall = ", ".join(f"{c} {'-' if r is None else f'{100 * r:.0f}%'}" for c, r in o.recall().items())
            lines.append(f"{name}: recall {recall}")
    for name, o in outcomes.revisions.items():
        if o.brier is not None:  # answers whose client asked for probabilities, labelled
            bins = ", ".join(f"{100 * b['confidence']:.0f}% sure: right {100 * b['accuracy']:.0f}% of {b['answers']}"
                             for b in o.reliability())
            lines.append(f"{name}: calibration over {o.calibrated} labelled answers with probabilities: Brier score "
                         f"(top class) {o.brier:.4f}; {bins}")
    return "\n".join(lines)


def outcomes(env: environment.Environment) -> dict:
    gcloud = Gcloud(env.target, env["PROJECT"], env["REGION"])
    service, freshness = env["SERVICE"], env["OUTCOME_FRESHNESS"]
    now = time.time()
    source = env["LABELS"] or "feedback"
    reader = OutcomeReader(store_for(gcloud, env["RUN_DIR"], env["OUTCOMES_TABLE"]), service, source)
    found = reader.outcomes(since(freshness, now), now + 1.0)
    print(f"service {service} on {env.target}, labels from {source}, the last {freshness}:")
    print(outcomes_text(found))
    report = {"service": service, "labels_from": source, **found.as_json()}
    busiest = sorted(found.revisions.values(), key=lambda o: o.predictions, reverse=True)[:2]
    if len(busiest) == 2 and busiest[0].regression and busiest[1].regression:
        moved = value_shift(busiest[0], busiest[1])
        if moved is not None:
            report["value_shift"] = {"revisions": [busiest[0].revision, busiest[1].revision], **moved.as_json()}
            print(f"predicted values, {busiest[0].revision} vs {busiest[1].revision}: Kolmogorov-Smirnov distance "
                  f"{moved.distance:.3f}, p = {moved.p_value:.3g}")
    elif len(busiest) == 2:
        shift = mix_shift(busiest[0].mix, busiest[1].mix)
        if shift is not None:
            report["mix_shift"] = {"revisions": [busiest[0].revision, busiest[1].revision], **shift.as_json()}
            print(f"prediction mix, {busiest[0].revision} vs {busiest[1].revision}: total variation "
                  f"{shift.distance:.3f}, chi-square {shift.statistic:.2f} on {shift.dof} dof, p = {shift.p_value:.3g}")
    path = env["RUN_DIR"] / "report" / "outcomes.json"
    write_atomically(path, json.dumps(report, indent=1))
    print(f"wrote {path}")
    return report


def load(env: environment.Environment) -> int:
    url = env["LOAD_URL"]
    if not url:
        raise ToolError("LOAD_URL: the service URL to send the labelled load to (make labelled-load LOAD_URL=...)")
    rows = labelled_rows(Path(env["LOAD_CSV"])) if env["LOAD_CSV"] else None
    run = LabelledLoad(url, env["LOAD_RATE"], env["LABEL_DELAY_S"], env["LOAD_JITTER"], env["LOAD_TOKEN"], rows=rows,
                       feedback_key=required_key(env))
    print(f"labelled load on {url}: {env['LOAD_RATE']:g}/s for {env['LOAD_SECONDS']:g} s, labels "
          f"{env['LABEL_DELAY_S']:g} s later ...", flush=True)
    try:
        run.run(env["LOAD_SECONDS"])
    except KeyboardInterrupt:
        pass
    path = env["RUN_DIR"] / "report" / "labelled-load.json"
    run.write(path)
    print(f"{len(run.answered)} answered, {run.labels_posted} labels posted, {len(run.failures)} failed; wrote {path}")
    if run.failures:
        print(f"the first failure: {run.failures[0]}")
    return 0 if run.answered and not run.failures else EXIT_FAILED


def required_key(env: environment.Environment) -> str:
    """The key labels are signed with (FEEDBACK_KEY, or the one make feedback-key keeps); a ToolError saying how to
    make one when there is none."""
    key = current_key(env["RUN_DIR"])
    if key is None:
        raise ToolError(f"no feedback key to sign labels with: make one (make feedback-key, kept in "
                        f"{key_path(env['RUN_DIR'])}) and deploy the service with it, or set FEEDBACK_KEY")
    return key


def feedback_key(env: environment.Environment, rotate: bool) -> int:
    key, previous, made = make_key(env["RUN_DIR"], rotate)
    where = key_path(env["RUN_DIR"])
    print(f"{'made' if made else 'kept'} the feedback key in {where} (only its holder can label answers):")
    print(key)
    if previous:
        print(f"the key before is kept in {where}.previous; deploy both while revisions move to the new one, then "
              f"drop FEEDBACK_KEY_PREVIOUS (--remove-env-vars FEEDBACK_KEY_PREVIOUS)")
    variables = f"FEEDBACK_KEY={key}" + (f",FEEDBACK_KEY_PREVIOUS={previous}" if previous else "")
    print(f"deploy with: gcloud run deploy ... --set-env-vars {variables}")
    print("on Cloud Run keep it in Secret Manager: --set-secrets FEEDBACK_KEY=<secret>:latest (docs/cloud-run.md)")
    return 0


def sign(env: environment.Environment, body_text: str) -> int:
    key = required_key(env)
    body = (sys.stdin.read() if body_text == "-" else body_text).strip().encode()
    try:
        json.loads(body)
    except ValueError:
        raise ToolError(f"BODY: not JSON: {body[:80]!r}; sign what you post, e.g. "
                        f"BODY='{{\"id\": \"<X-Answer-Id>\", \"label\": \"setosa\"}}'") from None
    header = signature(body, key)
    url = (env["LOAD_URL"] or "http://localhost:5001").rstrip("/")
    print(f"{HEADER}: {header}")
    print(f"curl -X POST {url}/feedback -H 'Content-Type: application/json' -H '{HEADER}: {header}' "
          f"--data-raw {shlex.quote(body.decode())}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iris_tools.quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Settings:\n\n" + environment.help_text("target", "quality"))
    parser.add_argument("command", choices=("outcomes", "sink", "load", "feedback-key", "sign"))
    parser.add_argument("body", nargs="?", help="sign: the JSON body to sign (- reads stdin)")
    parser.add_argument("--rotate", action="store_true", help="feedback-key: make a new key, keep the old as previous")
    args = parser.parse_args(argv)
    target = "cloudrun"
    try:
        env = environment.read(os.environ, "quality")
        target = env.target
        if args.command == "load":
            return load(env)
        if args.command == "feedback-key":
            return feedback_key(env, args.rotate)
        if args.command == "sign":
            body = args.body or os.environ.get("BODY")
            if not body:
                raise ToolError("BODY: the JSON to sign (make sign-feedback BODY='{\"id\": ..., \"label\": ...}')")
            return sign(env, body)
        if args.command == "sink":
            gcloud = Gcloud(env.target, env["PROJECT"], env["REGION"])
            create_sink(gcloud, env["SERVICE"], env["OUTCOMES_TABLE"], gcloud.region, print)
            return 0
        outcomes(env)
        return 0
    except COMMAND_FAILURES as exc:
        return failed(exc, target)


if __name__ == "__main__":
    sys.exit(main())
