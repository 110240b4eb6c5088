"""The base of every configuration section (shared by the config modules)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every config section: unknown keys rejected, frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
