"""`make bench`: every serving target measured side by side with wrk.

  measure    the runs, the table and docs/benchmarks.md (python -m iris_tools.bench)
  serving_targets  the serving targets, each a way to start one HTTP server
  fixtures   what the baselines serve (the tutorial's Flask app, an empty function)
"""
