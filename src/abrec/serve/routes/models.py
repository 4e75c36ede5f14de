"""Admin routes under `/v1/admin/models`: which model version is served, and hot reload.

`POST /v1/admin/models/reload` loads a version of the configured model registry
(`ServeConfig.model_registry`; the promoted one when the body names none) in a worker
thread while requests go on being served by the current engine, then swaps the engine in
one assignment: every request is served wholly by the old or wholly by the new version,
and its exposures store that version (`model_version`). The version is also stored as the
serving version, so every other process of the service loads it within about one
`sync_poll_s` plus its load time. A version lacking a model that a running experiment
serves (or the fallback model) is refused with 409 and nothing changes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from abrec.artifacts import ArtifactError
from abrec.serve.schemas import Problem
from abrec.serve.security import require_admin, require_read
from abrec.serve.services import ReloadRefusedError, Services, Svc

router = APIRouter(prefix="/v1/admin/models", tags=["admin"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem},
    404: {"model": Problem},
    409: {"model": Problem},
    422: {"model": Problem},
}


class ReloadRequest(BaseModel):
    """Which registry version to serve; omit ``version`` for the promoted one."""

    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{16}$", description="a version of `abrec models list`"
    )


class ServingModel(BaseModel):
    """The model version this process serves."""

    model_config = ConfigDict(protected_namespaces=())

    version: str | None = Field(description="null when the service serves a bundle folder")
    models: list[str]
    promoted: str | None = Field(default=None, description="the registry's promoted version")
    previous: str | None = Field(default=None, description="after a reload: the version before")


def _promoted(s: Services) -> str | None:
    if s.models is None:
        return None
    try:
        return s.models.promoted()
    except ArtifactError:
        return None


@router.get("", responses=_ERRORS, dependencies=[Depends(require_read)])
async def serving_model(s: Svc) -> ServingModel:
    """The version this process serves and the registry's promoted one."""
    engine = s.engine
    promoted = await run_in_threadpool(_promoted, s)
    return ServingModel(version=engine.version, models=engine.model_names, promoted=promoted)


@router.post("/reload", responses=_ERRORS, dependencies=[Depends(require_admin)])
async def reload_model(
    s: Svc, body: Annotated[ReloadRequest | None, Body()] = None
) -> ServingModel:
    """Load a registry version without a restart and swap it in atomically (every
    process of the service follows)."""
    version = body.version if body is not None else None
    if version is not None and s.models is not None:
        try:
            await run_in_threadpool(s.models.get, version)
        except ArtifactError as exc:
            raise HTTPException(404, str(exc)) from exc
    try:
        old, new = await run_in_threadpool(s.reload_model, version)
    except (ReloadRefusedError, ArtifactError) as exc:
        raise HTTPException(409, str(exc)) from exc
    promoted = await run_in_threadpool(_promoted, s)
    return ServingModel(
        version=new.version, models=new.model_names, promoted=promoted, previous=old.version
    )
