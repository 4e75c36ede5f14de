"""Admin routes under `/v1/admin/experiments`: list, create, start, stop, set weights.

Changes need `Authorization: Bearer <token>`, the token being `ServeConfig.admin_token`;
the list also accepts the read token (`ServeConfig.read_token`). Without a configured
token the routes answer 401. Specs are validated with the rules used when they are read
back (`abrec.experiment.spec`), so whatever is stored here loads at the next start.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException
from fastapi.concurrency import run_in_threadpool

from abrec.errors import ExperimentError
from abrec.experiment.spec import ExperimentSpec
from abrec.serve.schemas import Problem, WeightsRequest
from abrec.serve.security import require_admin, require_read
from abrec.serve.services import ExperimentId, Services, Svc, spec_or_404

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem},
    404: {"model": Problem},
    409: {"model": Problem},
}
_ERRORS_422: dict[int | str, dict[str, Any]] = {**_ERRORS, 422: {"model": Problem}}

router = APIRouter(prefix="/v1/admin/experiments", tags=["admin"])
_ADMIN = [Depends(require_admin)]

_SPEC_EXAMPLES: dict[str, Any] = {
    "ab": {
        "summary": "A/B test of two bundle models",
        "value": {
            "id": "ease-vs-popularity-2",
            "variants": [
                {"name": "control", "weight": 0.5, "model": "popularity"},
                {"name": "treatment", "weight": 0.5, "model": "ease"},
            ],
            "primary_metric": "ctr",
            "guardrails": ["exposures_per_unit"],
        },
    }
}


def _spec_json(spec: ExperimentSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json")


def _latest(s: Services, experiment_id: str, changed: object) -> dict[str, Any]:
    """The changed spec a registry call returned, else the registry's latest version."""
    spec = changed if isinstance(changed, ExperimentSpec) else s.registry.get(experiment_id)
    return _spec_json(spec)


@router.get("", responses=_ERRORS, dependencies=[Depends(require_read)])
async def list_experiments(s: Svc) -> list[dict[str, Any]]:
    """All experiments (latest version of each); the read token suffices."""
    specs = await run_in_threadpool(s.registry.list)
    return [_spec_json(x) for x in specs]


@router.post("", status_code=201, responses=_ERRORS_422, dependencies=_ADMIN)
async def create_experiment(
    spec: Annotated[ExperimentSpec, Body(openapi_examples=_SPEC_EXAMPLES)], s: Svc
) -> dict[str, Any]:
    """Create an experiment; every variant's model must be in the loaded bundle."""
    missing = sorted({v.model for v in spec.variants if not s.engine.has_model(v.model)})
    if missing:
        raise HTTPException(
            422, f"model(s) {missing} are not in the bundle; use one of {s.engine.model_names}"
        )  # admin-only route: naming the bundle's models is fine here
    try:
        created = await run_in_threadpool(s.registry.create, spec)
    except ExperimentError as exc:
        raise HTTPException(409, str(exc)) from exc
    return _spec_json(created if isinstance(created, ExperimentSpec) else spec)


async def _transition(s: Services, experiment_id: str, action: str) -> dict[str, Any]:
    spec_or_404(s, experiment_id)
    try:
        changed = await run_in_threadpool(getattr(s.registry, action), experiment_id)
    except ExperimentError as exc:
        raise HTTPException(409, str(exc)) from exc
    return _latest(s, experiment_id, changed)


@router.post("/{experiment_id}/start", responses=_ERRORS, dependencies=_ADMIN)
async def start_experiment(experiment_id: ExperimentId, s: Svc) -> dict[str, Any]:
    """Start assigning units (draft → running). Stopping is final: starting a stopped
    (or an already running) experiment is a 409."""
    return await _transition(s, experiment_id, "start")


@router.post("/{experiment_id}/stop", responses=_ERRORS, dependencies=_ADMIN)
async def stop_experiment(experiment_id: ExperimentId, s: Svc) -> dict[str, Any]:
    """Stop assigning units (final); recommendations fall back, results stay available."""
    return await _transition(s, experiment_id, "stop")


@router.put("/{experiment_id}/weights", responses=_ERRORS_422, dependencies=_ADMIN)
async def set_weights(experiment_id: ExperimentId, body: WeightsRequest, s: Svc) -> dict[str, Any]:
    """Change traffic weights; sticky experiments keep already-assigned units."""
    spec_or_404(s, experiment_id)
    try:
        changed = await run_in_threadpool(s.registry.set_weights, experiment_id, body.weights)
    except ExperimentError as exc:
        raise HTTPException(422, str(exc)) from exc
    return _latest(s, experiment_id, changed)
