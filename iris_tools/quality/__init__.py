"""A model version judged by its answers: predictions joined to the true labels that come back, per revision.

  outcomes   the join: accuracy with its interval, per-class recall, confusion, label coverage and delay, the
             prediction mix and its two-sample test between revisions
  sources    where predictions and labels are read: Cloud Logging's entries (gcloud logging read; the local
             Cloud Run answers it too), or labels from an `id,label` CSV file
  rehearsal  a labelled load: iris points with jitter sent to a URL, their true labels posted back later
"""
