"""GitOps: change detection between revisions, field diffs, scaffold (``init``)."""
