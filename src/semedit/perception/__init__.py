"""Pretrained face models, each with the loader of its public checkpoint format.

Submodules: ``identity`` (ArcFace IR-SE50 torch / insightface ONNX), ``parsing`` (BiSeNet),
``landmarks`` (68 points, FFHQ alignment, hull masks), ``regions`` (face/hair splitters), ``lpips``.
They are imported on demand so that ``import semedit.perception`` stays cheap.
"""
