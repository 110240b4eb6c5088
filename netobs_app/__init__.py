"""The composition root: the ``netobs`` command, process wiring, the scheduler, the one Settings tree.

It sits above every component and the kernel; nothing imports it. Each component owns its
configuration section and its plug-in dicts; this package puts them together.
"""

__all__: list[str] = []
