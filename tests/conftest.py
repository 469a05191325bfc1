"""Registers the fixtures every suite shares (tests/support/fixtures.py)."""

pytest_plugins = ("tests.support.fixtures",)
