"""Commands of `git mlx` for this part of the ML workflow (registered by cli.build_parser).

Keep this module light: argparse wiring here, real work imported inside the handlers.
"""

from __future__ import annotations

from typing import Any


def register(command: Any) -> None:
    """Add this module's commands. `command(name, handler, help, parent=<top level>)` returns
    the new subparser; handlers take the argparse namespace and return an exit code."""
