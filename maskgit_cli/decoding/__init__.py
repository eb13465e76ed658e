"""Inpainting: mask schedules, the decoding step (sampler), the decoding loop, known-pixel guidance, and the
inpainting of image batches and folders."""
