"""One module per stage; the CLI command, dvc.yaml (through the CLI) and deploy/ call its ``run``.

Each module declares ``PARAMS``, the params.yaml sections its ``run`` reads, and wraps ``run``
in :func:`pipeline.config.uses`, so the function body sees only those sections. Stages find
every file through :class:`pipeline.storage.Layout` and publish through
:mod:`pipeline.storage`. A stage reads what earlier stages wrote and never redoes their work;
no stage module imports another (shared helpers live in :mod:`pipeline.inputs`).
"""
