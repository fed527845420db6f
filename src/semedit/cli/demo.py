"""CLI: `semedit demo`, the local web app (hair transfer, ChunkyGAN editing, generation)."""

from __future__ import annotations

import logging

import torch

from semedit.cli.commands import add_command
from semedit.cli.common import CLIError, add_speed_arguments
from semedit.demo.app import serve
from semedit.demo.limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_MB, upload_limits
from semedit.demo.models import load_models

__all__ = ["register"]


def cmd_demo(args) -> int:
    try:
        import gradio  # noqa: F401  (optional dependency: the `demo` extra)
    except ModuleNotFoundError:
        raise CLIError("the demo needs Gradio: pip install 'semedit[demo]' (or `make install`)") from None
    if args.max_upload_mb <= 0 or args.max_pixels <= 0:
        raise CLIError("--max-upload-mb and --max-pixels must be positive")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"--device {args.device} requested but CUDA is not available; use --device cpu")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"semedit demo: listening on {args.host}: anyone who can reach this machine can use the demo")
    models = load_models(args.hair_model, args.generator, args.directions, device=args.device,
                         hair_pca_samples=args.pca_samples, latent_pca_samples=args.pca_samples * 32,
                         precision=args.precision, compile=args.compile)
    limits = upload_limits(args.max_upload_mb, args.max_pixels)
    # The server's console shows what the demo does (models loaded, inversions cancelled, unexpected errors).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests
    serve(models, limits, host=args.host, port=args.port, share=args.share, preview_every=args.preview_every)
    return 0


def register(subparsers) -> None:
    p = add_command(subparsers, "demo")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=None, help="port (default: Gradio's, 7860 or the next free one)")
    p.add_argument("--share", action="store_true", help="also make a public gradio.live link (needs internet)")
    p.add_argument("--hair-model", default=None, help="hair model: semedit checkpoint, the released FG 2021 model or "
                   "a registry name (default: the embedded tiny model with random weights)")
    p.add_argument("--generator", default=None, help="StyleGAN2 checkpoint or registry name for the ChunkyGAN and "
                   "Generate tabs (default: the tiny random 32 px generator)")
    p.add_argument("--directions", default=None, help="folder of direction files (*.safetensors); hair-embedding "
                   "ones go to the hair tab (default: PCA directions computed at start-up)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help="largest upload in MB")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="largest upload in pixels (w x h)")
    p.add_argument("--pca-samples", type=int, default=64, help="generated samples for the start-up hair PCA "
                   "(x32 for the PCA of W); 0 disables")
    p.add_argument("--preview-every", type=int, default=10, help="inversion steps between live previews")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    add_speed_arguments(p)
    p.set_defaults(func=cmd_demo)
