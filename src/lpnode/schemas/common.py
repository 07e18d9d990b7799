"""Schemas shared by every route: error bodies, media references and health."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

HealthStatus = Literal["LOADING", "OK", "ERROR", "IDLE"]


class APIError(BaseModel):
    """The body of every non-validation error."""

    msg: str = Field(..., description="What went wrong, in words a caller can act on.")


class HTTPError(BaseModel):
    """Error envelope: ``{"detail": {"msg": ...}}``."""

    detail: APIError = Field(..., description="The error.")


class Media(BaseModel):
    """One generated image or video frame."""

    url: str = Field(..., description="A data URL (or absolute URL) of the media.")
    seed: int = Field(..., description="The seed that produced this media.")
    nsfw: bool = Field(..., description="Whether the safety checker flagged this media.")


class MediaURL(BaseModel):
    """A reference to media by URL."""

    url: str = Field(..., description="A data URL (or absolute URL) of the media.")


class HealthCheck(BaseModel):
    """Runner health: LOADING while the model loads, IDLE when ready and unused, OK while busy,
    ERROR when the model failed to load.

    ``warnings`` (an lpnode addition, absent when empty) names what works only in part, such as a
    missing safety checker: the runner still serves, so ``status`` stays in ai-runner's vocabulary and a
    go-livepeer orchestrator, which ignores unknown fields and kills a runner that says ERROR, keeps it."""

    status: HealthStatus = Field(..., description="The runner's state.")
    warnings: list[str] = Field(
        default_factory=list,
        # A healthy runner answers exactly ai-runner's {"status": ...}.
        exclude_if=lambda warnings: not warnings,
        description="What works only in part and how to fix it (lpnode only; absent when there is nothing to say).",
    )
