"""Reports: one writer per format (text, json, markdown, sarif, junit, github)."""
