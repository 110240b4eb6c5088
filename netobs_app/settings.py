"""The one Settings tree: the kernel's sections plus the sections each component owns.

Each component keeps its section's model in its own ``config.py``; only this module, at the
top of the house, puts them together. ``load`` and ``dump`` are the kernel's, typed to it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from alerts.config import AlertsConfig
from analytics.config import AnalyticsConfig, PolicyScheduleConfig
from collectors.config import CollectorConfig, ExportersConfig, SamplerConfig
from dashboards.config import DashboardsConfig
from netobs import config as kernel
from netobs.config import ConfigError
from pipeline.config import EnrichConfig, PipelineConfig

__all__ = ["ConfigError", "Settings", "dump", "load"]


class Settings(kernel.Settings):
    """The whole configuration of a netobs process."""

    collector: CollectorConfig = Field(default_factory=CollectorConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    enrich: EnrichConfig = Field(default_factory=EnrichConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    analytics: AnalyticsConfig = Field(default_factory=AnalyticsConfig)
    policy: PolicyScheduleConfig = Field(default_factory=PolicyScheduleConfig)
    dashboards: DashboardsConfig = Field(default_factory=DashboardsConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    exporters: ExportersConfig = Field(default_factory=ExportersConfig)


def load(path: str | Path | None = None) -> Settings:
    """Load the YAML file at ``path`` (optional), apply env overrides, validate."""
    return kernel.load(path, Settings)


def dump(settings: kernel.Settings) -> str:
    """The effective configuration as YAML, secrets masked."""
    return kernel.dump(settings)
