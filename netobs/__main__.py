"""``python -m netobs``: the ``netobs`` command, which the composition root (``netobs_app``) owns.

The kernel's one mention of the root: a program, run and never imported, so no kernel module
depends on it.
"""

if __name__ == "__main__":
    from netobs_app.cli import entry

    entry()
