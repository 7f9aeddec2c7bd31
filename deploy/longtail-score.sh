#!/usr/bin/env bash
# The daily batch: score every segment as of a date (default: today, UTC) with the champion.
# Called by deploy/crontab and deploy/longtail-score.service, each under `flock -n`.
# Placeholders (see docs/operations.md): /opt/longtail is the checkout (after `uv sync --frozen`).
# Exit codes: 0 scored or already done; 1 error, nothing published; 3 drift alert (published).
set -euo pipefail

LONGTAIL_HOME="${LONGTAIL_HOME:-/opt/longtail}"
AS_OF="${1:-$(date -u +%F)}"

cd "$LONGTAIL_HOME"
export MLFLOW_DISABLE_TELEMETRY=true
export DVC_NO_ANALYTICS=1
exec "$LONGTAIL_HOME/.venv/bin/longtail" score \
  --params "$LONGTAIL_HOME/params.yaml" --segment all --as-of "$AS_OF"
