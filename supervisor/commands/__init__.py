"""`fac` subcommands that live in their own modules (one module per group of commands).

Like `cli.py` they stay thin and cheap to import: heavy modules are imported inside command bodies.
"""

from __future__ import annotations

import json
from typing import Any

import click


def factory() -> Any:
    from supervisor.factory import Factory

    return Factory.find()


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))
