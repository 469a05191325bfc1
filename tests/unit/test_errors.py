"""Every exception class sriovkit defines has the one root, `sriovkit.errors.SriovkitError`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import sriovkit
from sriovkit.errors import SriovkitError

# The stdlib-only `sriov` shim script and the wire codec written into it: they run without sriovkit.
_STDLIB_ONLY = {"sriovkit.shim.client", "sriovkit.shim.wire"}


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(sriovkit.__path__, "sriovkit.")
                  if m.name not in _STDLIB_ONLY and "_pb2" not in m.name and not m.name.endswith("__main__"))


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name:
                found[f"{name}.{attr}"] = value
    return found


def test_every_sriovkit_exception_derives_from_the_root() -> None:
    classes = _exception_classes()
    assert len(classes) >= 30, sorted(classes)  # the walk found the package's errors, not nothing
    assert [name for name, cls in classes.items() if not issubclass(cls, SriovkitError)] == []


def test_specific_builtin_bases_are_kept_beside_the_root() -> None:
    from sriovkit.resources.config import ConfigError
    from sriovkit.unixsocket import SocketInUseError

    assert issubclass(ConfigError, ValueError)
    error = SocketInUseError(98, "in use")
    assert isinstance(error, OSError) and error.errno == 98


_MESSAGE_MATCH = re.compile(
    r"""["'][^"']*["']\s+(?:not\s+)?in\s+str\((?:e|exc|err|error)\)"""  # "text" in str(exc)
    r"""|str\((?:e|exc|err|error|reason)\)\.(?:startswith|endswith)\("""  # str(exc).startswith(...)
    r"""|\b(?:e|exc|err|error)\.args\[0\]"""  # exc.args[0]
    r"""|\b(?:exc|err|error)\.(?:msg|details|strerror)\.(?:startswith|endswith)\(""")


def test_no_decision_is_made_on_an_error_message() -> None:
    """What a caller decides on is an exception's class or attribute, never its words: they change."""
    src = Path(sriovkit.__file__).parent
    found = [f"{path.relative_to(src)}:{n}: {line.strip()}" for path in sorted(src.rglob("*.py"))
             if "_pb2" not in path.name
             for n, line in enumerate(path.read_text().splitlines(), 1) if _MESSAGE_MATCH.search(line)]
    assert found == []


def test_the_message_check_finds_what_it_looks_for() -> None:
    for line in ['if "already in" in str(exc):', 'str(reason).startswith("already in")', "code = exc.args[0]",
                 'if err.details.startswith("no such")']:
        assert _MESSAGE_MATCH.search(line), line
