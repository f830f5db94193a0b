"""The commands run against real collectors: the collector tests' ``launch`` fixture."""

from tests.collector.conftest import launch

__all__ = ["launch"]
