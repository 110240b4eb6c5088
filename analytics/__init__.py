"""Analytics: cross-center traffic baselines, anomaly detectors, the policy engine, reports.

Detectors are small pure functions over pandas data (``analytics.detectors``) fed by the SQL
traffic model over the rollups (``analytics.model``); findings carry ids stable across reruns
(``analytics.findings``). ``netobs analyze`` runs them over a window.
"""

from analytics.findings import Finding

__all__ = ["Finding"]
