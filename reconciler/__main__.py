"""``python -m reconciler`` runs the ``modelops`` command."""

from reconciler.cli import main

main()
