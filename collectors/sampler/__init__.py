"""Pod packet samples with L7 context: the ``netobs sample`` node agent (see :mod:`.agent`)."""

from collectors.sampler.agent import SampleAgent

__all__ = ["SampleAgent"]
