"""Stage ``generate``: the synthetic world into data/raw, its true PDs into data/truth."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pipeline.config import Sections, uses
from pipeline.storage import Layout, publishing

log = logging.getLogger(__name__)
PARAMS = ("world",)


@uses(*PARAMS)
def run(settings: Sections, progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Generate the synthetic world; returns the rows written per table.

    data/raw and data/truth are each published whole: a failed run leaves the previous world.
    """
    from world.synth import WorldSpec, generate

    layout = Layout(settings.data_dir)
    spec = WorldSpec(**settings.world.model_dump())
    with publishing(layout.raw) as raw, publishing(layout.truth) as truth:
        counts = generate(spec, raw, truth, progress=progress)
    log.info("generated world %s: %s", spec, counts)
    return counts
