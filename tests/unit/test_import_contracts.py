"""The import contracts (.importlinter, checked by `./dev lint`) cover the whole package: a
package or module the layers contract does not name would be checked by none of its rules."""

from __future__ import annotations

import configparser
import pkgutil
import re
from pathlib import Path

import sriovkit

CONTRACTS = Path(__file__).resolve().parents[2] / ".importlinter"


def _layered_names() -> list[str]:
    config = configparser.ConfigParser(inline_comment_prefixes=None, comment_prefixes=(";", "#"))
    config.read(CONTRACTS)
    layers = config["importlinter:contract:layers"]
    assert [c.strip() for c in layers["containers"].split()] == ["sriovkit"]
    return [name for line in layers["layers"].splitlines() for name in re.split(r"[|:]", line) if name.strip()]


def test_every_module_of_sriovkit_has_a_layer() -> None:
    named = [name.strip() for name in _layered_names()]
    assert len(named) == len(set(named)), "a package named in two layers"
    modules = {m.name for m in pkgutil.iter_modules(sriovkit.__path__)}
    assert modules - set(named) == set(), "add these to the layers contract in .importlinter"
    assert set(named) - modules == set(), "the layers contract names what no longer exists"
