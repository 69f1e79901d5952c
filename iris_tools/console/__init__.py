"""The migration console: one local page that shows a service's split, revisions, live figures and rollout, and
drives them (a split, Roll back, Promote) through the same code as `make traffic`, `make rollback` and `make promote`."""
