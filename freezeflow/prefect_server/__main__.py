"""``python -m freezeflow.prefect_server ARGS``: ``prefect server start ARGS`` in this process, after
:func:`freezeflow.prefect_server.sqlite.configure_prefect_database` (``freezeflow server`` runs this)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    from freezeflow.prefect_server.sqlite import configure_prefect_database

    configure_prefect_database()
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", *argv]
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
