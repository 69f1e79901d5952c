"""`make outcomes-sink`: a Cloud Logging sink that routes a service's prediction and feedback lines to BigQuery.

On Cloud Run it does three things, each printed as it runs:
  1. the dataset (OUTCOMES_TABLE, default <PROJECT>.iris_outcomes), made with Google's BigQuery client if missing;
  2. gcloud logging sinks create <SINK> bigquery.googleapis.com/projects/<P>/datasets/<D>
         --log-filter='<the service's prediction and feedback lines>' --use-partitioned-tables
  3. the sink's writer identity (its service account, `gcloud logging sinks describe`) made a WRITER of that dataset
     (BigQuery's roles/bigquery.dataEditor on the dataset alone, not on the project).
An existing sink of that name is updated to the filter and destination instead. Locally there is nothing to make:
the local store reads the revisions' logs themselves.
"""

from __future__ import annotations

from collections.abc import Callable

from iris_tools.google.gcloud import Gcloud, GcloudError
from iris_tools.quality.bigquery import DEFAULT_DATASET, sink_filter


def sink_name(service: str) -> str:
    return f"{service}-outcomes"


def create_sink(gcloud: Gcloud, service: str, dataset: str | None, location: str,
                say: Callable[[str], None]) -> str:
    """Make (or update) the sink and its dataset and grant; the sink's name."""
    if gcloud.target == "local":
        say("locally there is no sink to make: `make outcomes` and the rollout read the revisions' logs in "
            "RUN_DIR/cloudrun/logs with DuckDB, taking in only what is new at each look")
        return ""
    from google.cloud import bigquery

    from iris_tools.quality.bigquery import BigQueryStore

    store = BigQueryStore.from_gcloud(gcloud, dataset or f"{gcloud.project}.{DEFAULT_DATASET}")
    project, _, name = store.dataset.partition(".")
    wanted = bigquery.Dataset(store.dataset)
    wanted.location = location
    made = store.client.create_dataset(wanted, exists_ok=True)
    say(f"dataset {store.dataset} ({made.location})")
    sink = sink_name(service)
    destination = f"bigquery.googleapis.com/projects/{project}/datasets/{name}"
    arguments = [sink, destination, f"--log-filter={sink_filter(service)}", "--use-partitioned-tables"]
    try:
        gcloud.run("logging", "sinks", "create", *arguments)
        say(f"gcloud logging sinks create {' '.join(arguments)}")
    except GcloudError as exc:
        if "already exists" not in str(exc).lower():
            raise
        gcloud.run("logging", "sinks", "update", *arguments[:3])
        say(f"gcloud logging sinks update {' '.join(arguments[:3])} (it existed)")
    writer = gcloud.json("logging", "sinks", "describe", sink)["writerIdentity"]
    member = writer.split(":", 1)[-1]
    dataset_now = store.client.get_dataset(store.dataset)
    entry = bigquery.AccessEntry(role="WRITER", entity_type="userByEmail", entity_id=member)
    if entry not in dataset_now.access_entries:
        dataset_now.access_entries = [*dataset_now.access_entries, entry]
        store.client.update_dataset(dataset_now, ["access_entries"])
    say(f"{writer} may write to {store.dataset} (roles/bigquery.dataEditor on the dataset; the same as "
        f"`bq add-iam-policy-binding --member={writer} --role=roles/bigquery.dataEditor {project}:{name}`)")
    say(f"lines reach {store.dataset}.run_googleapis_com_stdout within minutes; then `make outcomes` and "
        f"`make rollout LABELS=feedback` read them (OUTCOMES_TABLE={store.dataset})")
    return sink
