"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from executor.bybit.client import BybitClient
from executor.bybit.simulator import SimConfig, SimulatorServer
from tests.integration.helpers import OPEN_LEANS


@pytest.fixture(autouse=True)
async def _close_leans() -> AsyncIterator[None]:
    """Close the lean connections a test's pipelines opened."""
    yield
    while OPEN_LEANS:
        await OPEN_LEANS.pop().aclose()


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    """The simulator in-process on a free loopback port; faults drawn from seed 7."""
    async with SimulatorServer(SimConfig(seed=7), host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
async def bybit(sim: SimulatorServer) -> AsyncIterator[BybitClient]:
    """A Bybit client pointed at ``sim``."""
    async with httpx.AsyncClient(timeout=5) as http:
        yield BybitClient(http, sim.url)
