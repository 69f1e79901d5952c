"""Gradual migration between revisions: gated canary steps, rollback, traffic by model name, on Cloud Run and locally."""
