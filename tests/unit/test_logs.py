"""sriovkit.logs: the text and JSON line formats and the context fields lines carry."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from sriovkit import logs
from sriovkit.cni.log import EventLog


@pytest.fixture
def capture(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger(f"sriovkit.test.{request.node.name}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream, handler
    logger.removeHandler(handler)


def _json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_time_level_msg_and_the_context(capture) -> None:
    logger, stream, handler = capture
    handler.setFormatter(logs.JsonFormatter())
    with logs.context(pod="team-a/web-0", network="team-a/sriov-a"):
        logger.warning("added %s", "net1")
    logger.info("outside")
    first, second = _json_lines(stream)
    assert first["msg"] == "added net1" and first["level"] == "warning" and first["logger"] == logger.name
    assert (first["pod"], first["network"]) == ("team-a/web-0", "team-a/sriov-a")
    assert str(first["time"]).endswith("Z") and "T" in str(first["time"])
    assert second["msg"] == "outside" and "pod" not in second


def test_contexts_nest_and_end(capture) -> None:
    logger, stream, handler = capture
    handler.setFormatter(logs.JsonFormatter())
    with logs.context(pod="ns/p"):
        with logs.context(network="ns/n"):
            logger.info("inner")
        logger.info("outer")
    (inner, outer) = _json_lines(stream)
    assert (inner["pod"], inner["network"]) == ("ns/p", "ns/n")
    assert outer["pod"] == "ns/p" and "network" not in outer
    assert logs.current_context() == {}


def test_context_is_per_thread(capture) -> None:
    logger, stream, handler = capture
    handler.setFormatter(logs.JsonFormatter())
    with logs.context(claim="ns/c1"):
        other = threading.Thread(target=lambda: logger.info("other thread"))
        other.start()
        other.join()
    (line,) = _json_lines(stream)
    assert "claim" not in line, "a worker thread's lines carry only its own context"


def test_a_field_never_replaces_time_level_or_msg(capture) -> None:
    logger, stream, handler = capture
    handler.setFormatter(logs.JsonFormatter())
    with logs.context(msg="forged", level="debug"):
        logger.error("real")
    (line,) = _json_lines(stream)
    assert (line["msg"], line["level"]) == ("real", "error")


def test_traceback_stays_inside_the_json_line(capture) -> None:
    logger, stream, handler = capture
    handler.setFormatter(logs.JsonFormatter())
    try:
        raise KeyError("boom")
    except KeyError:
        logger.exception("unexpected")
    (line,) = _json_lines(stream)  # one line, whatever the traceback's length
    assert line["msg"] == "unexpected" and "KeyError: 'boom'" in str(line["error"])


def test_text_line_appends_the_context_as_key_values(capture) -> None:
    logger, stream, handler = capture
    handler.setFormatter(logs.TextFormatter())
    with logs.context(pod="ns/p", network="a network"):
        logger.info("added")
    line = stream.getvalue().rstrip("\n")
    assert line.endswith(' INFO ' + logger.name + ' added pod=ns/p network="a network"')


def test_cni_event_lines_carry_their_fields_as_json_and_stay_unchanged_as_text(capture) -> None:
    logger, stream, handler = capture
    cni = logging.getLogger("sriovkit.cni")
    cni.addHandler(handler)
    level = cni.level
    cni.setLevel(logging.DEBUG)
    try:
        log = EventLog(command="ADD", container="c" * 64, ifname="net1")
        log.bind(pod="team-a/web-0", netns="/var/run/netns/p", pci="0000:3b:02.4")
        handler.setFormatter(logs.JsonFormatter())
        log.error("failed", code=7, msg="invalid network config")
        handler.setFormatter(logs.TextFormatter())
        log.info("attached")
    finally:
        cni.removeHandler(handler)
        cni.setLevel(level)
    as_json, as_text = stream.getvalue().splitlines()
    fields = json.loads(as_json)
    assert fields["msg"] == "failed" and fields["level"] == "error" and fields["code"] == 7
    assert (fields["pod"], fields["container"], fields["ifname"], fields["pci"], fields["netns"]) == (
        "team-a/web-0", "c" * 12, "net1", "0000:3b:02.4", "/var/run/netns/p")
    assert as_text.endswith("level=info event=attached command=ADD container=cccccccccccc ifname=net1 "
                            "pci=0000:3b:02.4 pod=team-a/web-0 netns=/var/run/netns/p")


def test_setup_leaves_handlers_already_there(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    existing = logging.NullHandler()
    monkeypatch.setattr(root, "handlers", [existing])
    logs.setup("debug", "json")
    assert root.handlers == [existing]


def test_setup_installs_the_format_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    logs.setup("warning", "json")
    (handler,) = root.handlers
    assert isinstance(handler.formatter, logs.JsonFormatter) and root.level == logging.WARNING
    assert any(isinstance(f, logs.ContextFilter) for f in handler.filters)
