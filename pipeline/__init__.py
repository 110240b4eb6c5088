"""Pipeline: consume flow batches from the transport, enrich them, insert them into the store."""

from pipeline.pipeline import Pipeline

__all__ = ["Pipeline"]
