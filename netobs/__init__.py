"""netobs shared kernel: typed config, flow schema, batches, transports, stores, metrics, CLI."""

__version__ = "0.1.0"

__all__ = ["__version__"]
