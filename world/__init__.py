"""The synthetic transaction world: a development and demo tool, never imported by production."""
