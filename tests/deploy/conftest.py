"""Fixtures for the deployment tests. Helper modules here have names unique across tests/
(deploy_env, deploy_validate, helm_render), since this directory goes on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy_env import DEPLOY


@pytest.fixture(scope="session")
def agent_needs() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "agent-needs.yaml").read_text())
    return data
