"""``python -m netobs``: the ``netobs`` command, which the composition root (``netobs_app``) owns."""

from netobs_app.cli import entry

entry()
