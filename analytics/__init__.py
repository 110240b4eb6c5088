"""Analytics: cross-center traffic baselines and anomaly detectors (issue 5, in progress).

Detectors are small pure functions over pandas data (``analytics.detectors``); findings carry
ids stable across reruns (``analytics.findings``). The SQL traffic model over the rollups and
``netobs analyze`` come with the pipeline's rollups.
"""

from analytics.findings import Finding

__all__ = ["Finding"]
