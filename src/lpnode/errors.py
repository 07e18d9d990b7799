"""Errors lpnode raises, and what each means to a caller.

    LpnodeError                      anything lpnode raises on purpose
    ├── ConfigError                  the operator's flags, env or files are unusable (exit, one clear line)
    ├── ModelStoreError              models dir problems
    │   ├── ModelNotFoundError       a model is not in the models dir
    │   └── HubUnreachableError      the Hugging Face Hub cannot be reached for a pull
    ├── GrpcError (protocol)         a gRPC call failed; carries its gRPC status code
    └── JobError                     one request cannot be served; carries its HTTP status
        ├── BadRequestError          400: the request cannot be served as given
        │   └── LoraLoadingError     400: a LoRA in `loras` is malformed, missing or incompatible
        ├── PayloadTooLargeError     413: an upload is over the size limit
        ├── UnsupportedMediaError    415: an upload's format cannot be decoded
        ├── OutOfMemoryError         500: the device ran out of memory
        ├── PipelineFailedError      500: the model failed for a reason that is not the caller's
        ├── UnavailableError         503: loading, failed to load, or at capacity (carries Retry-After)
        └── JobCancelledError        the caller went away; nothing is sent

Library exceptions (torch, diffusers, PIL, huggingface_hub) are mapped to these at the module that calls
the library; none crosses a module boundary unmapped.
"""

from __future__ import annotations


class LpnodeError(Exception):
    """Base of every error lpnode raises on purpose."""


class ConfigError(LpnodeError):
    """The configuration given by the operator cannot be used."""


class ModelStoreError(LpnodeError):
    """A problem with the models directory or fetching into it."""


class ModelNotFoundError(ModelStoreError):
    """A model is not present in the models directory."""


class HubUnreachableError(ModelStoreError):
    """The Hugging Face Hub could not be reached."""


class JobError(LpnodeError):
    """A request that cannot be served. ``message`` is safe to show to the caller."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(JobError):
    status_code = 400


class LoraLoadingError(BadRequestError):
    """A LoRA named in ``loras`` cannot be used."""


class PayloadTooLargeError(JobError):
    status_code = 413


class UnsupportedMediaError(JobError):
    status_code = 415


class OutOfMemoryError(JobError):
    status_code = 500


class PipelineFailedError(JobError):
    status_code = 500


class UnavailableError(JobError):
    status_code = 503

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class JobCancelledError(JobError):
    """The client disconnected; the job stopped. Never rendered to anyone."""

    status_code = 499
