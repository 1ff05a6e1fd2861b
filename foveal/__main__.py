"""``python -m foveal`` runs the command line."""

from foveal.cli import main

main()
