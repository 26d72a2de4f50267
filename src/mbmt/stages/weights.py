"""Get the ImageNet weights of the backbones that models with `pretrained: true` start from.

Writes data/weights/BACKBONE.safetensors and data/weights/BACKBONE.json (timm's model and tag,
where the file came from, sha256, size) for each backbone named, or for every backbone the models
of params.yaml need when none is named. Sources, in order: params backbone_weights.BACKBONE (a
local .safetensors/.pth), the Hugging Face Hub through huggingface_hub as timm downloads
(HF_ENDPOINT, HF_HOME, HF_TOKEN, proxies and HF_HUB_OFFLINE apply; the Hub's cache is used when it
holds the file), then timm's older torch.hub cache. The file must fit the backbone; nothing is
written otherwise. The trainings read only these files, so DVC versions what they start from.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("backbones", nargs="*", metavar="BACKBONE",
                        help="timm backbone names (default: every backbone that a model with pretrained: true "
                        "starts from ImageNet weights)")


def main(args: argparse.Namespace) -> int:
    from mbmt.config import load_params
    from mbmt.errors import ParamsError
    from mbmt.plan import Plan

    params = load_params(args.params)
    needed = Plan(params).imagenet_backbones
    backbones = args.backbones or needed
    unused = [name for name in backbones if name not in needed]
    if unused:
        raise ParamsError(f"no model of params.yaml starts {', '.join(map(repr, unused))} from ImageNet weights "
                          f"(those that do: {', '.join(needed) or 'none'}); check the name, or set pretrained: true")
    if not backbones:
        print("no model of params.yaml starts from ImageNet weights (pretrained: false everywhere): nothing to get")
        return 0

    from mbmt.models.pretrained import fetch_weights
    from mbmt.paths import weights_file

    for name in backbones:
        record = fetch_weights(name, params["backbone_weights"])
        print(f"{weights_file(name)}: timm {record['timm_model']}.{record['timm_tag']}, from {record['source']}, "
              f"{record['bytes'] / 2**20:.1f} MiB, sha256 {record['sha256']}")
    return 0
