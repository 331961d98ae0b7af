"""Entry point of the ``chimera`` command: subcommands grouped by job.

Exit codes: 0 ok, 2 user error (bad input, config, names), 1 internal error.
"""

from __future__ import annotations

import sys

import typer

from chimera_core.cli import (
    config_cmds,
    data_cmds,
    lab_cmds,
    pipeline_cmds,
    plugin_cmds,
    registry_cmds,
    serving_cmds,
    stage_cmds,
)
from chimera_core.cli.common import err_console
from chimera_core.errors import ChimeraError
from chimera_core.logs import debug_enabled, setup_logging

app = typer.Typer(
    name="chimera",
    help="Train a multi-agent research lab with hierarchical RL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_cmds.register(app)
data_cmds.register(app)
plugin_cmds.register(app)
stage_cmds.register(app)
serving_cmds.register(app)
pipeline_cmds.register(app)
lab_cmds.register(app)
registry_cmds.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and map errors to exit codes; never show a traceback for a user error."""
    setup_logging()  # every command's log lines name their run, stage and role
    try:
        # Standalone mode: click handles usage errors (exit 2), --help and typer.Exit itself.
        app(args=argv, standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except ChimeraError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:
        if debug_enabled():
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc}\n"
            "(set CHIMERA_DEBUG=1 for the traceback)",
            highlight=False,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
