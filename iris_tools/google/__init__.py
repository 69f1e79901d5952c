"""Clients of the Google APIs that both halves of the tooling read: gcloud (the Admin API), Cloud
Monitoring's timeSeries, and the formats they share (RFC 3339 times, distributions).

The local Cloud Run (`iris_tools.cloudrun`) serves these APIs and the rollout (`iris_tools.rollout`)
reads them; neither owns this package, and it imports neither.
"""
