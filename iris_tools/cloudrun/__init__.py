"""A local Cloud Run: the Admin API that gcloud drives, revisions that run for real, Envoy as the data plane."""
