"""``python -m freezeflow``: the same command as the ``freezeflow`` script."""

from freezeflow.cli.app import main

main()
