"""What the demo reads from the environment, read once when the app is created."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

BUCKET_VARIABLE = "FASTSTREAM_KIT_DEMO_BUCKET"
PREFIX_VARIABLE = "FASTSTREAM_KIT_DEMO_PREFIX"
CACHE_VARIABLE = "FASTSTREAM_KIT_DEMO_CACHE"


@dataclass(frozen=True)
class DemoSettings:
    """Which model answers the chat and where the gallery's files live.

    ``openai_model`` is ``None`` for the built-in scripted model. ``bucket`` is ``None`` for
    the embedded S3 server the demo starts itself; with a bucket the demo uses real S3 through
    boto3's default credential chain (``AWS_*`` variables, profiles, instance roles) and
    uploads its two sample files under ``prefix`` unless they are there already.
    """

    openai_model: str | None = None
    bucket: str | None = None
    prefix: str = "faststream-kit-demo/"
    cache_dir: Path | None = None  # where the generated video is kept between runs

    @property
    def chat_model(self) -> str:
        """The model name the chat reports: the OpenAI model, or ``scripted``."""
        return self.openai_model or "scripted"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DemoSettings:
        openai_model = None
        if environ.get("OPENAI_API_KEY"):  # the SDK reads it, and OPENAI_BASE_URL, itself
            openai_model = environ.get("OPENAI_MODEL") or "gpt-4o-mini"
        cache = environ.get(CACHE_VARIABLE)
        return cls(
            openai_model=openai_model,
            bucket=environ.get(BUCKET_VARIABLE) or None,
            prefix=environ.get(PREFIX_VARIABLE, cls.prefix),
            cache_dir=Path(cache) if cache else None,
        )
