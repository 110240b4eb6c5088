"""Alert sinks (Alertmanager, webhook, e-mail) for findings and violations.

Empty until the analytics and policy engines produce findings.
"""

__all__: list[str] = []
