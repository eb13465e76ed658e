"""Compatibility: the browser page of `maskgit serve` lives in :mod:`maskgit_cli.web` (a front end beside
:mod:`maskgit_cli.cli`). This module keeps the old import path working; nothing in the package imports it."""

from maskgit_cli.web.handlers import KEEP_RESULTS, Page
from maskgit_cli.web.inputs import (
    EXAMPLES,
    MASK_SOURCES,
    MAX_PIXELS,
    MAX_SAMPLES,
    PageSettings,
    check_pixels,
    editor_image,
    example_names,
    generated_mask,
    masked_preview,
    page_mask,
    read_upload,
)
from maskgit_cli.web.layout import BRUSH_COLOR, CSS, build_page
from maskgit_cli.web.server import MAX_UPLOAD, check_port, serve
from maskgit_cli.web.streaming import Step, run_steps

__all__ = [
    "BRUSH_COLOR",
    "CSS",
    "EXAMPLES",
    "KEEP_RESULTS",
    "MASK_SOURCES",
    "MAX_PIXELS",
    "MAX_SAMPLES",
    "MAX_UPLOAD",
    "Page",
    "PageSettings",
    "Step",
    "build_page",
    "check_pixels",
    "check_port",
    "editor_image",
    "example_names",
    "generated_mask",
    "masked_preview",
    "page_mask",
    "read_upload",
    "run_steps",
    "serve",
]
