"""A model version judged by its answers: predictions joined to the true labels that come back, per revision.

  aggregate    the one query (BigQuery's dialect; DuckDB's by sqlglot) that turns predictions and labels into
               per-revision counts, error sums and sketches: never rows
  outcomes     those figures: accuracy with its interval, per-class recall, confusion, label coverage and delay, a
               regressor's MAE; the prediction mix's and the predicted values' two-sample tests between revisions
  local_store  TARGET=local: DuckDB over the local Cloud Run's revision logs, taking in only what is new
  bigquery     TARGET=cloudrun: BigQuery, fed by a Cloud Logging sink, read with Google's client
  sink         `make outcomes-sink`: the sink, its dataset and the grant its writer needs
  sources      which store a target reads, and labels from an `id,label` CSV file
  rehearsal    a labelled load: iris points with jitter sent to a URL, their true labels posted back later
"""
