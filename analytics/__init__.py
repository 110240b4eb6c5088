"""Analytics: cross-center traffic models, baselines and anomaly detectors (issue 5).

Empty until the pipeline writes enriched flows and rollups for it to read.
"""

__all__: list[str] = []
