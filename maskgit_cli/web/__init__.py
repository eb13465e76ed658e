"""`maskgit serve`: inpainting in the browser, a local Gradio page over the one decoding object, :class:`Inpainter`.

The page: open an image of any size (or pick an emoji64 test image), draw the hole with a brush or pick a generated
mask kind (stroke, box, half, outpaint), choose the decoding settings, press Inpaint and watch every step as it
happens (the decoded image and the token mask: white = known, black = still masked), then the result and its
samples; download the result PNGs, the mask and ``report.json``.

A front end beside :mod:`maskgit_cli.cli`, one module per job:

- :mod:`~maskgit_cli.web.inputs`: what the page's controls hold, read into pixels, masks and settings (the pixel
  limit, the brush's drawing, the decoding options passed straight to the library's settings);
- :mod:`~maskgit_cli.web.streaming`: :func:`run_steps`, the decode in a thread reporting every step;
- :mod:`~maskgit_cli.web.handlers`: :class:`Page`, what each button does and the results it saves;
- :mod:`~maskgit_cli.web.layout`: the Gradio page, panel by panel, wired to the handlers;
- :mod:`~maskgit_cli.web.server`: :func:`serve`, the server's life (port check, temporary folder, SIGTERM).

One decoding path: the page calls :class:`~maskgit_cli.decoding.pipeline.Inpainter`, the object behind `maskgit
inpaint`, loaded once at start-up; the same image, mask, settings and seed give the same pixels as the command line.
Requests are queued (one decode at a time, any number of tabs). Bad input (an unreadable file, an image over
:data:`~maskgit_cli.web.inputs.MAX_PIXELS`, an empty mask, a bad setting) is a message on the page, never a stack
trace, and the server keeps serving. Uploads and results live in a temporary folder removed when the server stops.

Gradio is imported lazily (the optional extra ``maskgit-cli[web]``): the rest of the package does not need it.
"""
