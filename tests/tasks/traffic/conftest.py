"""Fixtures shared by the traffic tests."""
import pytest

from graphcore.tasks.traffic.data import TrafficDataModule


@pytest.fixture(scope="module")
def los_loop() -> TrafficDataModule:
    """The bundled Los-loop with the default windows, set up once per test module."""
    data = TrafficDataModule()
    data.setup()
    return data
