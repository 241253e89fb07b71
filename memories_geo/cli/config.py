"""``config show``: the configuration in use, with its secrets masked."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import typer

from memories_geo.cli.failures import is_secret_name, scrub
from memories_geo.cli.output import JsonOption, console, plain, print_json, table
from memories_geo.cli.state import state
from memories_geo.config import redact_url

if TYPE_CHECKING:
    from memories_geo.config import TierConfig

__all__ = ["app", "masked", "show", "tier_settings"]

MASK = "***"

app = typer.Typer(name="config", help="The configuration in use.", no_args_is_help=True)


def masked(value: Any, *, secret: bool = False) -> Any:
    """``value`` with credential-like settings as ``***`` and passwords removed from URLs.

    Examples
    --------
    >>> masked({"key": "AKIA", "client_kwargs": {"endpoint_url": "http://minio:9000"}})
    {'key': '***', 'client_kwargs': {'endpoint_url': 'http://minio:9000'}}
    """
    if isinstance(value, Mapping):
        return {str(k): masked(v, secret=secret or is_secret_name(str(k))) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(v, secret=secret) for v in value]
    if secret and value is not None and value != "":
        return MASK
    return scrub(value) if isinstance(value, str) else value


def tier_settings(tier: TierConfig) -> dict[str, Any]:
    """Every setting of a tier as plain JSON values, secrets masked.

    Examples
    --------
    >>> from memories_geo.config import TierConfig
    >>> tier_settings(TierConfig(url="s3://b/x", storage_options={"secret": "s"}))["storage_options"]
    {'secret': '***'}
    """
    out = {}
    for f in fields(tier):
        value = getattr(tier, f.name)
        if isinstance(value, enum.Enum):
            value = value.value
        out[f.name] = redact_url(value) if f.name == "url" else masked(plain(value))
    return out


def _short(value: Any) -> str:
    if value is None or value == {} or value == []:
        return "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_nested(v)}" for k, v in value.items())
    return str(value)


def _nested(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={_nested(v)}" for k, v in value.items()) + "}"
    return str(value)


@app.command(epilog="Example: memories-geo --config memories.toml config show --json")
def show(ctx: typer.Context, json: JsonOption = False) -> None:
    """Show the configuration in use: where it comes from, the catalog and every tier (secrets masked)."""
    run = state(ctx)
    config = run.config()
    tiers = {name: tier_settings(tier) for name, tier in config.tiers.items()}
    document = {
        "source": run.source(),
        "catalog": redact_url(config.catalog),
        "default_tier": config.default_tier,
        "tiers": tiers,
    }
    if json:
        print_json(document)
        return
    out = console()
    out.print(f"source:       {document['source']}", markup=False)
    out.print(f"catalog:      {document['catalog']}", markup=False)
    out.print(f"default tier: {config.default_tier}", markup=False)
    columns = [c for c in next(iter(tiers.values()))
               if any(settings[c] not in (None, {}, []) for settings in tiers.values())]
    grid = table(None, ["tier", *columns])
    for name, settings in tiers.items():
        grid.add_row(name, *(_short(settings[c]) for c in columns))
    out.print(grid)
