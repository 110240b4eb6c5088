"""A labeled synthetic two-site, three-center bank for evaluating the detectors."""

from analytics.scenario.generate import ScenarioSpec, generate

__all__ = ["ScenarioSpec", "generate"]
