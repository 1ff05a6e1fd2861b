"""``python -m foveal`` runs the command line."""

from foveal.app.cli import main

main()
