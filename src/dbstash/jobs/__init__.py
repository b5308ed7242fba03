"""A backup job around a pipeline: the run, many databases, names, manifests, retention, prune."""
