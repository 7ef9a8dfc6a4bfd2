"""`genpercept`: one deterministic diffusion step with a UNet fine-tuned for depth or disparity.

Checkpoint directory (local or hub id)::

    unet/                               UNet2DConditionModel (4 input channels: the image latent)
    vae/                                AutoencoderKL (Stable Diffusion 2.1's); or option vae=SOURCE
    empty_prompt_embedding.safetensors  key "empty_prompt_embedding", [1,T,D] (the one the UNet was
                                        trained with; or text_encoder/ + tokenizer/ to compute it)
    genpercept.json                     {"kind": "depth" | "disparity"} (or option kind=)

Recipe (as published): image in [-1,1] -> VAE latent mode × scaling factor -> UNet at timestep 1
with the empty-prompt embedding -> prediction = -output (v-prediction with β ≡ 1) -> / scaling
factor -> VAE decode -> mean over channels -> clip [-1,1] -> [0,1]. Input sides are rounded up to
a multiple of the VAE factor (8); the full view has long side `processing_res` (768).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from labelgen.teachers.base import TEACHERS, Teacher, ceil_to_multiple, long_side_size
from labelgen.teachers.base import resize as resize_bilinear
from labelgen.teachers.source import (
    Checkpoint,
    ResolvedTeacher,
    combine_digests,
    diffusers_load_kwargs,
    is_local,
    locate,
    weight_digests,
)
from labelgen.teachers.spec import TeacherSpec, option_choice, option_int
from pipeline.model.precision import PRECISIONS

EMBEDDING_FILE = "empty_prompt_embedding.safetensors"
EMBEDDING_KEY = "empty_prompt_embedding"
CONFIG_FILE = "genpercept.json"
KINDS = ("depth", "disparity")
TIMESTEP = 1


def read_meta(checkpoint: Checkpoint) -> dict[str, Any]:
    """`genpercept.json` of the checkpoint ({} when absent)."""
    return checkpoint.read_json(CONFIG_FILE)


def resolve_kind(spec: TeacherSpec, meta: dict[str, Any]) -> str:
    """`depth` or `disparity`, from option `kind=` or `genpercept.json`."""
    kind = option_choice(spec, "kind", KINDS) or meta.get("kind")
    if kind not in KINDS:
        raise ValueError(
            f"teacher {spec.name!r}: say what the GenPercept UNet predicts, with option "
            f'kind=depth|disparity or a {CONFIG_FILE} holding {{"kind": "disparity"}} in '
            f"{spec.source} (found {kind!r})"
        )
    return kind


def vae_spec(spec: TeacherSpec) -> TeacherSpec:
    """The source the VAE is read from: option `vae=` (a directory, or a hub id of which only
    `vae/` is downloaded) or the checkpoint itself."""
    if "vae" not in spec.options:
        return spec
    return TeacherSpec(spec.name, spec.adapter, spec.options["vae"])


def vae_subfolder(src: TeacherSpec) -> str | None:
    """`vae`, or None for a local VAE source that is a VAE itself (`config.json` at its top)."""
    top_level = is_local(src.source) and (Path(src.source).expanduser() / "config.json").is_file()
    return None if top_level else "vae"


def vae_checkpoint(resolved: ResolvedTeacher) -> Checkpoint:
    """Where the VAE is read from: the `vae=` source located with the teacher, or the
    checkpoint itself."""
    return resolved.parts.get("vae", resolved)


def load_vae(resolved: ResolvedTeacher, **kwargs) -> Any:
    """`AutoencoderKL` from `SOURCE/vae` (or `vae=` pointing at a VAE or a pipeline)."""
    from diffusers import AutoencoderKL

    checkpoint = vae_checkpoint(resolved)
    if vae_subfolder(checkpoint.spec):
        kwargs["subfolder"] = vae_subfolder(checkpoint.spec)
    return checkpoint.load(AutoencoderKL.from_pretrained, **kwargs)


def load_embedding(checkpoint: Checkpoint) -> torch.Tensor:
    """The stored empty-prompt embedding `[1,T,D]`, or one computed with the checkpoint's own
    CLIP text encoder (empty prompt, not padded, as Marigold/GenPercept code does)."""
    spec = checkpoint.spec
    path = checkpoint.file(EMBEDDING_FILE)
    if path is not None:
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        if EMBEDDING_KEY not in tensors:
            raise ValueError(f"teacher {spec.name!r}: {path} has no tensor {EMBEDDING_KEY!r}")
        return tensors[EMBEDDING_KEY]
    from transformers import CLIPTextModel, CLIPTokenizer

    try:
        tok = checkpoint.load(CLIPTokenizer.from_pretrained, subfolder="tokenizer")
        enc = checkpoint.load(CLIPTextModel.from_pretrained, subfolder="text_encoder")
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"teacher {spec.name!r}: {spec.source} has neither {EMBEDDING_FILE} (tensor "
            f"{EMBEDDING_KEY!r}, [1,T,D]) nor text_encoder/ + tokenizer/ to compute it"
        ) from err
    ids = tok("", padding="do_not_pad", return_tensors="pt").input_ids
    with torch.inference_mode():
        return enc(ids)[0].clone()


@TEACHERS.register("genpercept")
class GenPerceptTeacher(Teacher):
    """GenPercept depth/disparity UNet + Stable Diffusion VAE, one step, deterministic."""

    adapter = "genpercept"
    options_help = {
        "kind": f"depth|disparity: what the UNet predicts (default: {CONFIG_FILE})",
        "vae": "VAE source, a directory or hub id (default: SOURCE/vae)",
        "processing_res": "long side of the full view (default 768)",
    }

    def __init__(self, resolved, device, precision, *, unet, vae, embedding, full_long, **kw):
        super().__init__(resolved, device, precision, **kw)
        self.unet, self.vae, self.embedding = unet, vae, embedding
        self.multiple = 2 ** (len(vae.config.block_out_channels) - 1)
        self.full_long = full_long

    @classmethod
    def check_options(cls, spec: TeacherSpec) -> None:
        option_choice(spec, "kind", KINDS)
        option_int(spec, "processing_res", None, minimum=8)

    @classmethod
    def check(cls, checkpoint: Checkpoint) -> None:
        resolve_kind(checkpoint.spec, read_meta(checkpoint))

    @classmethod
    def parts_of(cls, checkpoint: Checkpoint) -> dict[str, Checkpoint]:
        """The `vae=` source, when given: a local one whole, only `vae/` of a hub id."""
        src = vae_spec(checkpoint.spec)
        if src is checkpoint.spec:
            return {}
        return {"vae": locate(src, None if is_local(src.source) else "vae")}

    @classmethod
    def weights_identity(cls, checkpoint: Checkpoint, parts: dict[str, Checkpoint]) -> str:
        return genpercept_sha256(checkpoint, parts.get("vae"))

    @classmethod
    def from_checkpoint(
        cls, resolved: ResolvedTeacher, device: torch.device, precision: str
    ) -> Teacher:
        from diffusers import UNet2DConditionModel

        spec, meta = resolved.spec, read_meta(resolved)
        kind = resolve_kind(spec, meta)
        full_long = option_int(spec, "processing_res", meta.get("processing_res", 768), minimum=8)
        dtype = PRECISIONS[precision]
        kwargs = diffusers_load_kwargs(dtype)
        unet = resolved.load(UNet2DConditionModel.from_pretrained, subfolder="unet", **kwargs)
        vae = load_vae(resolved, **kwargs)
        embedding = load_embedding(resolved).to(device=device, dtype=dtype)
        return cls(
            resolved,
            device,
            precision,
            unet=unet.to(device).eval(),
            vae=vae.to(device).eval(),
            embedding=embedding,
            full_long=full_long,
            output_kind=kind,
            input_rule=input_rule(vae, full_long),
        )

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """`[B,3,H,W]` in [0,1] -> `[B,1,H',W']` in [0,1], H', W' multiples of the VAE factor."""
        size = [ceil_to_multiple(s, self.multiple) for s in x.shape[-2:]]
        x = resize_bilinear(x, size)
        x = (x * 2 - 1).to(self.dtype)
        scale = self.vae.config.scaling_factor
        latent = self.vae.encode(x).latent_dist.mode() * scale
        timestep = torch.full((x.shape[0],), TIMESTEP, device=x.device, dtype=torch.long)
        cond = self.embedding.expand(x.shape[0], -1, -1)
        v = self.unet(latent, timestep, encoder_hidden_states=cond).sample
        decoded = self.vae.decode(-v / scale).sample  # v-prediction with β ≡ 1: x0 = -v
        pred = decoded.float().mean(dim=1, keepdim=True).clamp(-1.0, 1.0)
        return (pred + 1.0) / 2.0

    def full_view_size(self, h: int, w: int) -> tuple[int, int]:
        """Long side `processing_res`, keep aspect, multiples of the VAE factor (8)."""
        return long_side_size(h, w, self.full_long, self.multiple)


def input_rule(vae: Any, full_long: int) -> dict[str, Any]:
    """JSON-able input rule for provenance."""
    multiple = 2 ** (len(vae.config.block_out_channels) - 1)
    return {
        "resize": f"multiple_of_{multiple}",
        "multiple": multiple,
        "full_view": {"long_side": full_long, "multiple": multiple},
        "range": "[-1,1]",
        "interpolation": "bilinear",
        "steps": 1,
        "timestep": TIMESTEP,
    }


def genpercept_sha256(checkpoint: Checkpoint, vae: Checkpoint | None = None) -> str:
    """Hash of the checkpoint's weight files, plus those of a separate `vae=` source `vae` (a
    local one whole, the `vae/` folder of a hub id)."""
    digests = weight_digests(checkpoint.directory)
    if vae is not None and vae.commit is None:
        digests += weight_digests(vae.directory, prefix="vae-source/")
    elif vae is not None:
        digests += weight_digests(vae.directory / "vae", prefix="vae-source/vae/")
    return combine_digests(digests)
