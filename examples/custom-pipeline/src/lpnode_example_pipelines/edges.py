"""Edge detection: an upload in, a black-and-white PNG of its edges out, on CPU in milliseconds.

The module imports only Pillow and pydantic at its top, so the runner can read its route (and open its
port) before anything loads.
"""

from __future__ import annotations

import base64
import io

from PIL import Image, ImageFilter, UnidentifiedImageError
from pydantic import BaseModel, Field

from lpnode.runner.pipelines import CustomPipeline, Job, LoadContext

MAX_PIXELS = 4096 * 4096


class EdgeDetectParams(BaseModel):
    image: bytes = Field(description="The image to trace: PNG, JPEG or WebP.")
    threshold: int = Field(32, ge=0, le=255, description="Edge strength (0-255) drawn as an edge.")
    colors: int = Field(0, ge=0, le=256, description="Reduce the image to this many colours first (0: do not).")


class EdgeDetectResult(BaseModel):
    image: str = Field(description="The edges as a PNG data URL: white edges on black.")
    width: int
    height: int
    edge_fraction: float = Field(description="Share of the pixels that are edges (0-1).")


class EdgeDetect(CustomPipeline[EdgeDetectParams]):
    """Trace the edges of an image.

    Optionally reduces the image to a few colours first, which keeps only the outlines of flat areas.
    """

    params = EdgeDetectParams
    response = EdgeDetectResult
    max_in_flight = 2  # run() keeps no state between calls, so two requests may run at once

    def __init__(self, ctx: LoadContext) -> None:
        super().__init__(ctx)
        # A pipeline with a model would load it here; this runs in a background thread while /health
        # says LOADING. Edge detection needs nothing loaded.
        self.kernel = ImageFilter.FIND_EDGES

    def run(self, params: EdgeDetectParams, job: Job) -> EdgeDetectResult:
        try:
            upload = Image.open(io.BytesIO(params.image))
            if upload.width * upload.height > MAX_PIXELS:
                raise ValueError(f"the image is {upload.width}x{upload.height}; at most 4096x4096 is taken")
            image = upload.convert("RGB")
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise ValueError("the upload is not an image (PNG, JPEG or WebP)") from exc
        if params.colors:
            image = image.quantize(colors=params.colors).convert("RGB")
        job.checkpoint()  # stops here if the caller has gone away
        edges = image.convert("L").filter(self.kernel).point(lambda v: 255 if v >= params.threshold else 0)
        histogram = edges.histogram()
        buffer = io.BytesIO()
        edges.save(buffer, format="PNG")
        return EdgeDetectResult(
            image="data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
            width=edges.width,
            height=edges.height,
            edge_fraction=round(histogram[255] / (edges.width * edges.height), 6),
        )
