"""How and when longtail runs: config, I/O, synthetic world, steps, registry, batch, CLI."""

import os

# polars allocates through jemalloc, which by default hands every freed block of 8 MB or more
# straight back to the kernel (its "oversize" arena purges eagerly) and the rest after half a
# second; a feature job frees and reallocates column-sized buffers all the time, and about a
# third of its CPU time went to the kernel faulting those pages in again. Keeping freed memory
# in the process (never purged, reused by the next allocation) costs some peak memory and saves
# that time. jemalloc reads this variable once, when it initialises (on polars' first
# allocation), so it is set here, before any module of the package imports polars; `import
# polars` puts its own defaults in front of it (the last setting of an option wins). A value
# already in the environment is kept. See docs/operations.md, "Feature jobs at scale".
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
os.environ.setdefault("_RJEM_MALLOC_CONF", JEMALLOC_CONF)
