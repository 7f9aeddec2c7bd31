"""How and when longtail runs: config, storage, inputs, stages/, registry, batch, CLI."""

import os
import sys

# polars allocates through jemalloc, which by default hands every freed block of 8 MB or more
# straight back to the kernel (its "oversize" arena purges eagerly) and the rest after half a
# second; a feature job frees and reallocates column-sized buffers all the time, and about a
# third of its CPU time went to the kernel faulting those pages in again. Keeping freed memory
# in the process (never purged, reused by the next allocation) saves that time for some peak
# memory. It is not for every stage: validation kept 9.5 GB instead of 5.3 GB and ran slower on
# the demo world, so only the commands that build features (`longtail features`, `longtail
# score`) ask for it, through keep_freed_memory(). See docs/operations.md, "Feature jobs at
# scale".
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"


def keep_freed_memory() -> bool:
    """Ask polars' jemalloc to keep freed memory for reuse; True if it can still take effect.

    jemalloc reads ``_RJEM_MALLOC_CONF`` once, on polars' first allocation, so this must run
    before anything imports polars; later, it only reaches child processes. ``import polars``
    puts its own defaults in front of the variable (the last setting of an option wins), and a
    value already in the environment is kept, so users can override it.
    """
    os.environ.setdefault("_RJEM_MALLOC_CONF", JEMALLOC_CONF)
    return "polars" not in sys.modules
