"""Settings for the model libraries (diffusers, transformers, huggingface_hub) when lpnode drives them:
no progress bars or advisory chatter in a server's log; lpnode logs what matters itself."""

from __future__ import annotations

import warnings
from typing import Any


def quiet_model_libraries() -> None:
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers_logging: Any = diffusers.utils.logging
    transformers_logging: Any = transformers.utils.logging

    diffusers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
