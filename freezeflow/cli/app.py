"""The ``freezeflow`` command: one typer app made of the command groups, one module each.

Each group module imports Prefect, TensorFlow and the Google clients inside its commands, so
``freezeflow --help`` loads none of them.
"""

from __future__ import annotations

import typer

from freezeflow.cli import catalog, fleet, freeze, housekeeping, pipeline, serving, team

app = typer.Typer(
    name="freezeflow",
    help="Train, freeze, export, validate and publish TensorFlow models with Prefect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts hold literal brackets ([/versions/N]); never parse them as markup
)
for group in (pipeline, fleet, catalog, freeze, serving, team, housekeeping):
    app.add_typer(group.app)


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
