"""How and when longtail runs: config, I/O, synthetic world, steps, registry, batch, CLI."""
