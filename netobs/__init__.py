"""netobs shared kernel: typed config, flow schema and tables, batches, transports, stores, metrics.

It imports no component; the composition root (``netobs_app``) puts the components together.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
