"""Fixtures for the push tests: a local push service, and the agent's push service pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent.push import PushService
from tests.push.helpers import make_push
from tests.support.push_service import LocalPushService


@pytest.fixture(scope="module")
def push_service() -> Iterator[LocalPushService]:
    service = LocalPushService()
    service.start()
    yield service
    service.stop()


@pytest.fixture
def local_push(push_service: LocalPushService) -> LocalPushService:
    push_service.received.clear()
    push_service.errors.clear()
    return push_service


@pytest.fixture
async def push(tmp_path: Path, local_push: LocalPushService) -> AsyncIterator[PushService]:
    service = make_push(tmp_path, local_push)
    await service.start()
    yield service
    await service.stop()
