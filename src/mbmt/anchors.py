"""Later published results on NYUv2 (13 classes, 288×384), for the report's reference columns.

They are published figures, not ours, and not the paper's. The paper's MTAN column (17.15 mIoU)
comes from MTAN's 2019 code: mIoU averaged per image (a legacy definition) and no augmentation.
On the same 13-class 288×384 protocol with augmentation, later work reports much higher numbers
with the same SegNet-MTAN backbone; an ImageNet-pretrained ResNet-50 backbone goes higher still, and is the
fair class for the ImageNet-pretrained EfficientNets of the paper.

Units as in mbmt.paper: percent for mIoU, pixel accuracy and the within-angle rates, metres for
depth, degrees for angles. Each figure was transcribed from the cited source and has not been
checked against the cited file here ("checked": False).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Anchor:
    key: str  # short label of the reference column
    title: str
    results: dict[str, dict[str, float]]  # {task: {metric: value}}, the keys of the metrics JSON
    source: str
    protocol: str
    reported: str  # which numbers of the training the figure is (cf. our evaluate.protocol)
    checked: bool = False  # whether the figure was compared with the cited file
    notes: list[str] = field(default_factory=list)

    def description(self) -> str:
        checked = "checked against the cited file" if self.checked else "not checked against the cited file"
        notes = "".join(f"; {note}" for note in self.notes)
        return (f"{self.key}: {self.title}. Source: {self.source} ({checked}{notes}). Protocol: {self.protocol}; "
                f"reported: {self.reported}.")


SEGNET_MTAN_PROTOCOL = "NYUv2, 13 classes, 288×384, SegNet-MTAN backbone, with augmentation"
# How the SegNet-MTAN figures were computed (MTAN's protocol, as Nash-MTL and Aligned-MTL follow it,
# and as config/mtan-protocol.yaml reproduces it): not one trained model's test metrics, but a mean
# over the last epochs' test passes and over seeds, with the depth and normal errors averaged per
# batch of MTAN's test loop.
MTAN_REPORTED = "the mean of the last 10 epochs of per-batch test metrics (MTAN's protocol), over 3 seeds"
# LibMTL's trainer keeps the epoch whose test metrics give the best Δm (its NYUv2 example
# validates on the test split): a selected epoch, not a mean over epochs.
RESNET_PROTOCOL = "NYUv2, 13 classes, 288×384, ImageNet-pretrained ResNet-50 DeepLabV3+, no augmentation, batch 8"
RESNET_REPORTED = "the best test epoch by Δm (selected on the test split; LibMTL), not a mean of the last 10 epochs"
# LibMTL's SegNet-MTAN table mixes rows quoted from papers with LibMTL's own runs; "best" below is
# among the quoted rows only, and the own runs' better figures are said beside it.
LIBMTL_SEGNET_TABLE = "LibMTL's examples/nyu/results/segnet_results.pdf"

ANCHORS = (
    Anchor(
        key="Ref. A",
        title="SegNet-MTAN + DWA (later work)",
        results={
            "semantic": {"miou": 39.11, "pix_acc": 65.31},
            "depth": {"abs_err": 0.5510, "rel_err": 0.2285},
            "normal": {"mean": 27.61, "median": 23.18,
                       "within_11_25": 24.17, "within_22_5": 50.18, "within_30": 62.39},
        },
        source=f"the DWA row of {LIBMTL_SEGNET_TABLE}, quoting the Nash-MTL and Aligned-MTL papers",
        protocol=SEGNET_MTAN_PROTOCOL,
        reported=MTAN_REPORTED,
    ),
    Anchor(
        key="Ref. B",
        title="Best mIoU with the SegNet-MTAN backbone among the paper-reported rows of LibMTL's table",
        results={"semantic": {"miou": 40.82}},
        source=f"the Aligned-MTL paper, as quoted in {LIBMTL_SEGNET_TABLE}",
        protocol=SEGNET_MTAN_PROTOCOL,
        notes=["LibMTL's own runs in the same table go higher (mIoU 41.27 with CAGrad)"],
        reported=MTAN_REPORTED,
    ),
    Anchor(
        key="Ref. C",
        title="Best abs error with the SegNet-MTAN backbone among the paper-reported rows of LibMTL's table",
        results={"depth": {"abs_err": 0.5261}},
        source=f"the Nash-MTL paper, as quoted in {LIBMTL_SEGNET_TABLE}",
        protocol=SEGNET_MTAN_PROTOCOL,
        notes=["LibMTL's own runs in the same table go lower (abs error 0.5213 with GradNorm)"],
        reported=MTAN_REPORTED,
    ),
    Anchor(
        key="Ref. D",
        title="ImageNet-pretrained ResNet-50 DeepLabV3+ (best of LibMTL's table, best test epoch)",
        results={"semantic": {"miou": 55.19}, "depth": {"abs_err": 0.3701}},
        source="LibMTL's examples/nyu/results/resnet_results.pdf: mIoU with MTAN + RLW, abs error with "
               "Cross-stitch + Nash-MTL",
        protocol=RESNET_PROTOCOL,
        reported=RESNET_REPORTED,
        notes=["the two figures come from different methods"],
    ),
)

# Why the paper's MTAN column and these differ, for the report's index.
EXPLANATION = (
    "The paper's MTAN column (17.15 mIoU) comes from MTAN's 2019 code, which averaged mIoU per image "
    "(a legacy definition) and trained without augmentation. The reference columns are later published "
    "figures on the same 13-class 288×384 split, trained with augmentation (SegNet-MTAN) or from an "
    "ImageNet-pretrained ResNet-50, hence much higher; they are quoted from their sources, not measured here, "
    "each under its own protocol: the SegNet-MTAN ones are means of the last 10 epochs over 3 seeds with "
    "per-batch errors, the ResNet-50 ones the best test epoch (each column's protocol says which)."
)


# --- The newest SegNet-MTAN results (2023-2025), with their Δm ------------------------------------
# Read from Table 1 of NTKMTL (Qin, Wang, Liao, Yan, NeurIPS 2025, arXiv 2510.18258: "Results on
# NYU-v2 (3-task) dataset. Each experiment is repeated 3 times with different random seeds and the
# average is reported"), which quotes or reruns every method on the protocol of Nash-MTL and FairGrad
# (its STL row is the single-task SegNet baseline of Nash-MTL's delta_fn; its DWA row is Ref. A's).
# Its Δm% is Nash-MTL's definition, the report's own (lower is better), so no conversion: the
# report recomputes each from the row and the STL row with mbmt.reporting.delta_m (within 0.01 of
# the published value, the rounding of the printed metrics; tests/test_anchors_2025.py).
RECENT_SOURCE = "Table 1 of NTKMTL (Qin et al., NeurIPS 2025, arXiv 2510.18258)"
RECENT_PROTOCOL = (f"{SEGNET_MTAN_PROTOCOL}; the protocol of Nash-MTL and FairGrad, as the table says; each "
                   "figure the average of 3 seeds")
# The order of the nine Δm metrics (mbmt.reporting.delta_m.DELTA_M_METRICS): mIoU, pixel accuracy (%);
# abs err (m), rel err; mean, median angle (deg); within 11.25, 22.5, 30 deg (%).
_NINE = (("semantic", "miou"), ("semantic", "pix_acc"), ("depth", "abs_err"), ("depth", "rel_err"),
         ("normal", "mean"), ("normal", "median"), ("normal", "within_11_25"), ("normal", "within_22_5"),
         ("normal", "within_30"))


def _row(*values: float) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for (task, key), value in zip(_NINE, values, strict=True):
        results.setdefault(task, {})[key] = value
    return results


@dataclass(frozen=True)
class PublishedRow:
    method: str
    venue: str
    results: dict[str, dict[str, float]]
    delta_m: float  # the source's Δm% (Nash-MTL's definition, against the source's STL row)


RECENT_STL = _row(38.30, 63.76, 0.6754, 0.2780, 25.01, 19.21, 30.14, 57.20, 69.15)
RECENT_SEGNET_MTAN = (
    PublishedRow("Aligned-MTL", "CVPR 2023", _row(40.15, 66.05, 0.5520, 0.2291, 25.37, 19.89, 28.30, 55.29, 67.95), -3.12),
    PublishedRow("FAMO", "NeurIPS 2023", _row(38.88, 64.90, 0.5474, 0.2194, 25.06, 19.57, 29.21, 56.61, 68.98), -4.10),
    PublishedRow("SDMGrad", "NeurIPS 2023", _row(40.47, 65.90, 0.5225, 0.2084, 25.07, 19.99, 28.54, 55.74, 68.53), -4.84),
    PublishedRow("DB-MTL", "arXiv 2023", _row(41.42, 66.45, 0.5251, 0.2160, 25.03, 19.50, 28.72, 56.17, 68.73), -5.36),
    PublishedRow("STCH", "ICML 2024", _row(41.35, 66.07, 0.4965, 0.2010, 26.55, 21.81, 24.84, 51.39, 64.86), -1.35),
    PublishedRow("FairGrad", "ICML 2024", _row(39.74, 66.01, 0.5377, 0.2236, 24.84, 19.60, 29.26, 56.58, 69.16), -4.66),
    PublishedRow("GO4Align", "arXiv 2024", _row(40.42, 65.37, 0.5492, 0.2167, 24.76, 18.94, 30.54, 57.87, 69.84), -6.08),
    PublishedRow("NTKMTL", "NeurIPS 2025", _row(39.68, 65.43, 0.5296, 0.2168, 24.24, 18.63, 30.74, 58.72, 70.78), -6.99),
    PublishedRow("NTKMTL-SR", "NeurIPS 2025", _row(40.23, 65.28, 0.5261, 0.2136, 24.88, 19.58, 29.53, 56.67, 69.08),
                 -5.35),
)
# The same table's DWA row: Ref. A above (from LibMTL's table), for the test that the transcription
# and the convention agree.
RECENT_DWA = PublishedRow("DWA", "CVPR 2019", _row(39.11, 65.31, 0.5510, 0.2285, 27.61, 23.18, 24.17, 50.18, 62.39), 3.57)
