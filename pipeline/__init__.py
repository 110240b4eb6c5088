"""Pipeline: consume flow batches from the transport, (later: enrich,) insert into the store."""

from pipeline.pipeline import Pipeline

__all__ = ["Pipeline"]
