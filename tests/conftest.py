"""Shared pytest configuration: markers and the project root."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: paper-scale checks run by `make test-slow` and the workflow, not by `make test`")
    config.addinivalue_line("markers", "browser: needs Debian chromium (installed by .ci/run)")


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT
