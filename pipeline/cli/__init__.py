"""The ``longtail`` command line: one command per stage, plus ``demo`` that runs them all.

Every command calls the ``run`` of its stage module in :mod:`pipeline.stages`; heavy libraries
are imported inside the commands so ``--help`` stays fast. Errors a user can fix are reported on
one line with a non-zero exit, never as a traceback. The commands live in one module per
group (data, modelling, scoring); importing them registers them on the one ``app``.
"""

from __future__ import annotations

from pipeline.cli import data, governance, modelling, scoring, service
from pipeline.cli.common import INPUT_EXIT_CODE, app

__all__ = ["INPUT_EXIT_CODE", "app", "data", "governance", "modelling", "scoring", "service"]
