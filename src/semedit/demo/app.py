"""The Gradio app of `semedit demo`: three tabs wired to the plain functions of the *_tab modules.

Server behaviour (see ``serve``):
- binds 127.0.0.1 unless told otherwise, and makes no public link unless ``share`` is asked;
- uploads are limited in bytes (by Gradio before they are stored, and again by ``read_upload``) and in
  pixels (``read_upload``, before decoding);
- a user error (a bad upload, a bad setting) is shown in the tab, under its inputs, until the next action;
  the server logs one line for it and keeps serving (unexpected errors are logged with their traceback);
- events go through Gradio's queue: one inversion at a time, two light events (renders) at a time;
- every file the app writes (uploads, results, examples) lives in one temporary folder, removed at exit;
- an inversion stops when its page is closed or Stop is pressed, and Stop shows the partial result (see
  ``chunky_tab.invert_photo``).
"""


import atexit
import functools
import inspect
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from semedit.demo.chunky_tab import MAX_CHUNKS, chunk_directions, invert_photo, mask_overlay, recomposite
from semedit.demo.generate_tab import GENERATE_SPACES, generate
from semedit.demo.hair_tab import DISPLAY_SIZE, paste_into_photo, prepare_pair, render_hair
from semedit.demo.limits import UploadLimits, read_upload
from semedit.demo.models import DemoModels
from semedit.errors import SemeditError
from semedit.inversion.base import INVERTERS

log = logging.getLogger(__name__)

__all__ = ["Workspace", "build_app", "serve", "example_photos"]

LIGHT = "semedit-light"  # concurrency group of the quick events (renders, generation)
HEAVY = "semedit-heavy"  # concurrency group of the inversion


class Workspace:
    """The one temporary folder the demo writes to: Gradio's uploads/cache, results, example photos."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="semedit-demo-"))
        self.gradio = self.root / "gradio"
        self.outputs = self.root / "outputs"
        self.examples = self.root / "examples"
        for d in (self.gradio, self.outputs, self.examples):
            d.mkdir(parents=True, exist_ok=True)

    def session_dir(self, session: str | None) -> Path:
        d = self.outputs / (session or "anonymous")
        d.mkdir(parents=True, exist_ok=True)
        return d

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def example_photos(folder: Path) -> list[Path]:
    """The two real photos that ship inside installed packages, written as files the page can use:
    scikit-image's astronaut (Eileen Collins) and matplotlib's Grace Hopper."""
    import matplotlib.cbook

    astronaut = folder / "astronaut.png"
    if not astronaut.is_file():
        Image.fromarray(skimage.data.astronaut()).save(astronaut)
    hopper = folder / "grace_hopper.jpg"
    if not hopper.is_file():
        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as src, open(hopper, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return [astronaut, hopper]


class Cancels:
    """One cancel event per browser session; set when its page closes or it presses Stop."""

    def __init__(self):
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def fresh(self, session: str) -> threading.Event:
        with self._lock:
            self._events[session] = event = threading.Event()
            return event

    def cancel(self, session: str) -> None:
        with self._lock:
            event = self._events.pop(session, None)
        if event is not None:
            event.set()


def _is_user_error(err: Exception) -> bool:
    return isinstance(err, (SemeditError, ValueError, FileNotFoundError))


def _error_text(err: Exception) -> str:
    if _is_user_error(err):
        log.info("demo: refused: %s", err)  # one line: what the page shows
        return f"**Error:** {err}"
    log.exception("demo: unexpected error")
    return f"**Unexpected error** ({type(err).__name__}: {err}); the server log has the details"


def _with_error_box(fn: Callable, box) -> Callable:
    """Run a handler that returns (or yields) ``{component: value}``; its first output also clears the tab's
    error box, and an error fills the box instead of Gradio's toast, leaving the other outputs as they were.
    The message stays next to the inputs until the next action."""
    import gradio as gr  # optional dependency (the `demo` extra): imported only by the app

    hidden = gr.update(value="", visible=False)

    def shown(err: Exception):
        return {box: gr.update(value=_error_text(err), visible=True)}

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                first = True
                for out in fn(*args, **kwargs):
                    yield {**out, box: hidden} if first else out
                    first = False
            except Exception as err:  # noqa: BLE001 - shown in the page
                yield shown(err)
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return {**fn(*args, **kwargs), box: hidden}
        except Exception as err:  # noqa: BLE001 - shown in the page
            return shown(err)
    return wrapper


def _show(image: np.ndarray, min_height: int = DISPLAY_SIZE) -> np.ndarray:
    """Small outputs (the tiny 32 px generator) enlarged with nearest-neighbour pixels for the page;
    downloads keep the real size."""
    h, w = image.shape[:2]
    factor = -(-min_height // h)
    if factor <= 1:
        return image
    return np.asarray(Image.fromarray(image).resize((w * factor, h * factor), Image.NEAREST))


def _save_png(image: np.ndarray, folder: Path, stem: str) -> Path:
    path = folder / f"{stem}-{uuid.uuid4().hex[:8]}.png"
    Image.fromarray(image).save(path)
    return path


def _header(models: DemoModels, limits: UploadLimits) -> str:
    return (
        "# semedit demo\n"
        f"**Generator:** {models.generator_label}  \n"
        f"**Hair model:** {models.hair_label}  \n"
        f"Uploads: up to {limits.max_megabytes:.1f} MB and {limits.max_pixels / 1e6:.1f} megapixels. "
        f"Files are kept only in a temporary folder on the server, deleted when it stops."
    )


THUMBNAIL = 160  # pixels: the height of the previews of uploaded photos (semedit's choice)


def thumbnail(path, limits: UploadLimits, what: str) -> np.ndarray | None:
    """A small preview of an uploaded photo (read, and so checked, by the demo's reader); None without one."""
    if path is None or str(path) == "":
        return None
    im = Image.fromarray(read_upload(path, limits, what))
    im.thumbnail((4 * THUMBNAIL, THUMBNAIL))
    return np.asarray(im)


def build_app(models: DemoModels, limits: UploadLimits, workspace: Workspace, preview_every: int = 10):
    """The gr.Blocks of the three tabs (not launched). Set GRADIO_TEMP_DIR before calling (``serve`` does)."""
    import gradio as gr  # optional dependency (the `demo` extra): imported only by the app

    examples = example_photos(workspace.examples)
    cancels = Cancels()
    hair_dirs = models.hair_directions
    chunk_dirs = chunk_directions(models)
    latent_dirs = models.latent_directions
    inv = models.invert_config.invert

    def slider(named, elem_id=None):
        return gr.Slider(-named.limit, named.limit, value=0.0, step=named.limit / 30, label=named.label,
                         elem_id=elem_id)

    def upload(label: str, elem_id: str):
        """A file upload (read by the demo's own checked reader) and the thumbnail of what was uploaded."""
        with gr.Column():
            file = gr.File(label=label, type="filepath", elem_id=f"{elem_id}-upload")
            thumb = gr.Image(label=f"{label.lower()} (preview)", format="png", interactive=False, height=THUMBNAIL,
                             elem_id=f"{elem_id}-thumb")
        return file, thumb

    def show_thumbnail(file, thumb, box, what: str) -> None:
        """Uploading (or picking an example) shows the photo's thumbnail, or why it cannot be used."""
        file.change(_with_error_box(lambda path: {thumb: thumbnail(path, limits, what)}, box), file, [thumb, box],
                    concurrency_id=LIGHT)

    with gr.Blocks(title="semedit demo", analytics_enabled=False) as demo:
        gr.Markdown(_header(models, limits))
        # -------------------------------------------------------------------------------- hair transfer
        with gr.Tab("Hair transfer", id="hair", elem_id="tab-hair"):
            gr.Markdown("The face of one photo with the hair of another (Šubrtová, Čech, Franc, FG 2021). Raw photos "
                        "are aligned automatically.")
            with gr.Row():
                face_in, face_thumb = upload("Face photo", "hair-face")
                hair_in, hair_thumb = upload("Hair photo", "hair-hair")
            hair_error = gr.Markdown(visible=False, elem_id="hair-error")
            hair_aligned = gr.Checkbox(False, label="photos are already FFHQ-aligned (skip face alignment)")
            gr.Examples([[str(examples[0]), str(examples[1]), str(examples[0]), str(examples[1])],
                         [str(examples[1]), str(examples[0]), str(examples[1]), str(examples[0])]],
                        inputs=[face_in, hair_in, face_thumb, hair_thumb], label="Examples (face, hair)")
            show_thumbnail(face_in, face_thumb, hair_error, "face photo")
            show_thumbnail(hair_in, hair_thumb, hair_error, "hair photo")
            transfer_btn = gr.Button("Transfer hair", variant="primary", elem_id="hair-run")
            with gr.Row():
                face_crop = gr.Image(label="aligned face photo", format="png", interactive=False)
                hair_crop = gr.Image(label="aligned hair photo", format="png", interactive=False)
                face_mask = gr.Image(label="face region (green)", format="png", interactive=False)
                hair_mask = gr.Image(label="hair region (red)", format="png", interactive=False)
            with gr.Row():
                with gr.Column():
                    alpha = gr.Checkbox(False, label="alpha blending (paste the original inner face back)")
                    mix = gr.Slider(0.0, 1.0, value=1.0, step=0.05,
                                    label="interpolation: 0 = the face's own hair, 1 = the transferred hair")
                    gr.Markdown("Hair directions (strength in std for PCA directions):")
                    hair_sliders = [slider(d) for d in hair_dirs]
                with gr.Column():
                    hair_out = gr.Image(label="result", format="png", interactive=False, elem_id="hair-result")
                    hair_file = gr.File(label="download result", elem_id="hair-download")
                    photo_file = gr.File(label="download the result in your photo (full size; only the face and "
                                               "hair regions of the aligned crop change)", elem_id="hair-photo-download")
            hair_notes = gr.Markdown(elem_id="hair-notes")
            pair_state = gr.State(None)

            def hair_downloads(request: gr.Request, pair, out) -> dict:
                folder = workspace.session_dir(_session(request))
                pasted = paste_into_photo(models, pair, out)
                return {hair_file: str(_save_png(out, folder, "hair-transfer")),
                        photo_file: str(_save_png(pasted, folder, "hair-transfer-photo")) if pasted is not None
                        else None}

            def on_transfer(request: gr.Request, face_path, hair_path, aligned, blend, t, *strengths):
                # (request first: Gradio fills it in by position, and *strengths must come last)
                pair, face_view, hair_view = prepare_pair(models, face_path, hair_path, limits, aligned)
                out = render_hair(models, pair, t, strengths, blend)
                return {pair_state: pair, face_crop: pair.face_crop, hair_crop: pair.hair_crop, face_mask: face_view,
                        hair_mask: hair_view, hair_out: _show(out), **hair_downloads(request, pair, out),
                        hair_notes: "  \n".join(pair.notes)}

            def on_hair_controls(request: gr.Request, pair, blend, t, *strengths):
                if pair is None:
                    raise ValueError("press 'Transfer hair' first")
                out = render_hair(models, pair, t, strengths, blend)
                return {hair_out: _show(out), **hair_downloads(request, pair, out)}

            transfer_btn.click(_with_error_box(on_transfer, hair_error),
                               [face_in, hair_in, hair_aligned, alpha, mix, *hair_sliders],
                               [pair_state, face_crop, hair_crop, face_mask, hair_mask, hair_out, hair_file,
                                photo_file, hair_notes, hair_error], concurrency_id=LIGHT, concurrency_limit=2)
            controls = [pair_state, alpha, mix, *hair_sliders]
            render_again = _with_error_box(on_hair_controls, hair_error)
            alpha.input(render_again, controls, [hair_out, hair_file, photo_file, hair_error], concurrency_id=LIGHT)
            for s in [mix, *hair_sliders]:
                s.release(render_again, controls, [hair_out, hair_file, photo_file, hair_error], concurrency_id=LIGHT)

        # -------------------------------------------------------------------------------- ChunkyGAN
        with gr.Tab("ChunkyGAN", id="chunky", elem_id="tab-chunky"):
            gr.Markdown("Invert a photo into n chunks, each with its own latent code and a soft mask "
                        "(Šubrtová et al., ECCV 2022), then edit each chunk.")
            with gr.Row():
                with gr.Column():
                    photo_in, photo_thumb = upload("Photo", "chunky")
                    chunky_aligned = gr.Checkbox(False, label="photo is already FFHQ-aligned")
                    gr.Examples([[str(p), str(p)] for p in examples], inputs=[photo_in, photo_thumb], label="Examples")
                with gr.Column():
                    method_in = gr.Dropdown(sorted(INVERTERS), value=inv.method, label="inversion method",
                                            elem_id="chunky-method")
                    n_in = gr.Slider(1, MAX_CHUNKS, value=min(inv.n, MAX_CHUNKS), step=1, label="n chunks (ChunkyGAN)")
                    space_in = gr.Radio(["w", "wplus", "s"], value=inv.space, label="latent space")
                    steps_in = gr.Slider(10, 1000, value=inv.steps, step=10, label="steps",
                                         elem_id="chunky-steps")
                    with gr.Row():
                        invert_btn = gr.Button("Invert", variant="primary", elem_id="chunky-run")
                        stop_btn = gr.Button("Stop", elem_id="chunky-stop")
            chunky_error = gr.Markdown(visible=False, elem_id="chunky-error")
            show_thumbnail(photo_in, photo_thumb, chunky_error, "photo")
            status = gr.Markdown(elem_id="chunky-status")
            with gr.Row():
                preview = gr.Image(label=f"live preview (every {preview_every} steps)", format="png",
                                   interactive=False, elem_id="chunky-preview")
                masks_view = gr.Image(label="chunk masks over the target", format="png", interactive=False,
                                      elem_id="chunky-masks")
                chunks_view = gr.Image(label="chunk images G(z_i)", format="png", interactive=False)
                edited = gr.Image(label="edited (recomposited)", format="png", interactive=False,
                                  elem_id="chunky-edited")
            gr.Markdown("Per-chunk directions (strength in std for PCA directions):")
            accordions, chunk_sliders = [], []
            for c in range(MAX_CHUNKS):
                with gr.Accordion(f"chunk {c}", open=c == 0, visible=False) as acc:
                    chunk_sliders.extend(slider(d) for d in chunk_dirs)
                accordions.append(acc)
            downloads = gr.File(label="download: the files `semedit invert` writes, and a zip of them",
                                file_count="multiple", elem_id="chunky-download")
            inv_state = gr.State(None)
            k = len(chunk_dirs)

            def on_invert(path, aligned, method, n, space, steps, request: gr.Request):
                # The status line is the one progress display: it says which step the preview shows.
                cancel = cancels.fresh(_session(request))
                for u in invert_photo(models, path, int(n), space, int(steps), limits,
                                      workspace.session_dir(_session(request)), preview_every, aligned, cancel,
                                      method):
                    if u.result is None:
                        yield {preview: _show(u.preview), status: u.status}
                        continue
                    r = u.result
                    overlay = mask_overlay(r.target, r.masks[0], max(DISPLAY_SIZE, r.target.shape[-1]))
                    with Image.open(r.folder / "chunks.png") as im:  # G(z_i) side by side, as `invert` wrote it
                        chunk_strip = _show(np.asarray(im.convert("RGB")))
                    yield {inv_state: r, preview: _show(u.preview), status: u.status, masks_view: overlay,
                           chunks_view: chunk_strip, edited: _show(u.preview), downloads: [str(p) for p in r.files],
                           **{acc: gr.update(visible=c < r.n) for c, acc in enumerate(accordions)},
                           **{s: gr.update(value=0.0) for s in chunk_sliders}}

            def on_chunk_slider(r, *values):
                if r is None:
                    raise ValueError("invert a photo first")
                rows = [list(values[c * k:(c + 1) * k]) for c in range(r.n)]
                return {edited: _show(recomposite(models, r, rows))}

            def on_stop(request: gr.Request):
                # Not Gradio's cancels=: the inversion ends at its next step and still shows what it has.
                cancels.cancel(_session(request))
                return "stopping after the current step …"

            invert_btn.click(
                _with_error_box(on_invert, chunky_error),
                [photo_in, chunky_aligned, method_in, n_in, space_in, steps_in],
                [inv_state, preview, status, masks_view, chunks_view, edited, downloads, *accordions, *chunk_sliders,
                 chunky_error], concurrency_id=HEAVY, concurrency_limit=1)
            stop_btn.click(on_stop, None, status, queue=False)
            for s in chunk_sliders:
                s.release(_with_error_box(on_chunk_slider, chunky_error), [inv_state, *chunk_sliders],
                          [edited, chunky_error], concurrency_id=LIGHT)

        # -------------------------------------------------------------------------------- generate
        with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
            with gr.Row():
                with gr.Column():
                    seeds_in = gr.Textbox("0-3", label="seeds (e.g. 0-3,7)")
                    psi_in = gr.Slider(0.0, 1.0, value=0.7, step=0.05, label="truncation psi")
                    gen_space = gr.Radio(list(GENERATE_SPACES), value="W", label="edit space")
                    layers_in = gr.Textbox("", label="layers for 'W+ layers' / 'S' (e.g. 0-3; empty = all)")
                    gen_sliders = [slider(d) for d in latent_dirs]
                    gen_error = gr.Markdown(visible=False, elem_id="generate-error")
                    gen_btn = gr.Button("Generate", variant="primary", elem_id="generate-run")
                # Rows grow with the images (a fixed height clipped the last row).
                gallery = gr.Gallery(label="generated", columns=4, format="png", height="auto", object_fit="contain",
                                     elem_id="generate-gallery")

            def on_generate(seeds, psi, space, layers, *strengths):
                images = generate(models, seeds, psi, space, layers, strengths)
                return {gallery: [(_show(img), caption) for img, caption in images]}

            gen_inputs = [seeds_in, psi_in, gen_space, layers_in, *gen_sliders]
            regenerate = _with_error_box(on_generate, gen_error)
            gen_btn.click(regenerate, gen_inputs, [gallery, gen_error], concurrency_id=LIGHT)
            for s in [psi_in, *gen_sliders]:
                s.release(regenerate, gen_inputs, [gallery, gen_error], concurrency_id=LIGHT)

        def on_unload(request: gr.Request):
            cancels.cancel(_session(request))  # a closed page stops its inversion

        demo.unload(on_unload)
    return demo


def _session(request) -> str:
    return getattr(request, "session_hash", None) or "anonymous"


def serve(models: DemoModels, limits: UploadLimits, host: str = "127.0.0.1", port: int | None = None,
          share: bool = False, workspace: Workspace | None = None, preview_every: int = 10,
          block: bool = True):
    """Build and launch the app; everything it writes goes under one temporary folder, removed at exit."""
    workspace = workspace or Workspace()
    atexit.register(workspace.remove)
    if threading.current_thread() is threading.main_thread():
        # `kill` (SIGTERM) ends the process through SystemExit, so atexit still removes the temporary folder.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    # Gradio reads these when the app is built; set them only if the user has not.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(workspace.gradio))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr  # optional dependency (the `demo` extra): imported only by the app

    demo = build_app(models, limits, workspace, preview_every)
    demo.queue(max_size=64, default_concurrency_limit=1)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts: works offline
    # quiet: Gradio's own lines advise `share=True` in `launch()`, which is `--share` here; say it ourselves.
    demo.launch(server_name=host, server_port=port, share=share, max_file_size=limits.max_bytes,
                allowed_paths=[str(workspace.outputs), str(workspace.examples)], prevent_thread_lock=True,
                theme=theme, footer_links=[], quiet=True, inbrowser=False)
    print(f"semedit demo: open {demo.local_url}", flush=True)
    if demo.share_url:
        print(f"semedit demo: public link (--share): {demo.share_url}", flush=True)
    elif host in ("127.0.0.1", "localhost"):
        print("semedit demo: reachable from this machine only; `semedit demo --host 0.0.0.0` serves the network, "
              "`--share` makes a public Gradio link. Ctrl-C stops it.", flush=True)
    if block:
        demo.block_thread()
    return demo
