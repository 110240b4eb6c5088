"""The analytics' configuration models (they live in the one Settings tree, ``netobs.config_analytics``)."""

from netobs.config_analytics import (
    AnalyticsConfig,
    DependencyConfig,
    DrTrafficConfig,
    ElephantConfig,
    FanoutConfig,
    GapConfig,
    PolicyScheduleConfig,
    ShiftConfig,
    VolumeConfig,
    Window,
)

__all__ = [
    "AnalyticsConfig",
    "DependencyConfig",
    "DrTrafficConfig",
    "ElephantConfig",
    "FanoutConfig",
    "GapConfig",
    "PolicyScheduleConfig",
    "ShiftConfig",
    "VolumeConfig",
    "Window",
]
