"""Reads of experiments: `GET /v1/experiments` (the list) and
`GET /v1/experiments/{id}/results` (the live analysis).

Both need the read token or the admin token (`abrec.serve.security.require_read`); the
dashboard (`abrec.serve.routes.ui`) reads through these two routes only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.concurrency import run_in_threadpool

from abrec.errors import AbrecError, StoreError
from abrec.experiment.analysis import ExperimentResults, analyze
from abrec.serve.schemas import Problem
from abrec.serve.security import require_read
from abrec.serve.services import ExperimentId, Svc, spec_or_404

router = APIRouter(tags=["results"])


@router.get(
    "/v1/experiments",
    responses={401: {"model": Problem}, 503: {"model": Problem}},
    dependencies=[Depends(require_read)],
)
async def list_experiments(s: Svc) -> list[dict[str, Any]]:
    """All experiments (the latest version of each spec), as `GET /v1/admin/experiments`
    lists them, for readers."""
    specs = await run_in_threadpool(s.registry.list)
    return [x.model_dump(mode="json") for x in specs]


@router.get(
    "/v1/experiments/{experiment_id}/results",
    response_model=ExperimentResults,
    responses={
        401: {"model": Problem},
        404: {"model": Problem},
        409: {"model": Problem},
        503: {"model": Problem},
    },
    dependencies=[Depends(require_read)],
)
async def results(experiment_id: ExperimentId, s: Svc) -> ExperimentResults:
    """Live analysis: per-variant metrics, SRM, effects with CIs (fixed and sequential), and
    the drift checks of the variants' models from the last monitor run (``drift``: null
    before the first run or with the monitor off)."""
    spec = spec_or_404(s, experiment_id)
    try:
        res = await run_in_threadpool(analyze, s.store, spec)
    except StoreError:
        raise
    except AbrecError as exc:
        raise HTTPException(409, f"cannot analyse {experiment_id!r} yet: {exc}") from exc
    snap = s.monitor.snapshot
    if snap is not None:
        res = dataclasses.replace(res, drift=snap.drift_for([v.model for v in spec.variants]))
    return res
