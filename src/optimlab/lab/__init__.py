"""The optimizer lab: problems, runs, batched replicas and storage (see the README)."""
