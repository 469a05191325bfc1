"""What the test suites share: the rigs (one per kind of thing under test), the views of the
kernel and of host-local's data dir, the one leak check, the one bounded wait (`waiting.py`), the
loopback endpoints (`endpoints.py`), and the fixtures (`fixtures.py`,
registered for every suite by tests/conftest.py). Import helpers from here, never from a
conftest.py."""
