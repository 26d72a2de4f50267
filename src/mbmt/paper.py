"""The paper's published numbers (MBMT-Net slides, WeADL 2022), for the "paper" columns.

Source: ../shared/seeds (slides "Analysis of the number of parameters", "Results ... compared to
state-of-the-art MTAN", "Relative improvements of MBMT-Net"). Units as published: percent for
mIoU, pixel accuracy and the within-angle rates, metres for depth, degrees for angles.
"""

from typing import NamedTuple

from mbmt.tasks import METRICS


class Architecture(NamedTuple):
    """A model's column title in the paper and its row of the paper's architecture table."""

    title: str
    context: str
    backbone: str
    architecture: str
    abbreviation: str


# Model name in params.yaml -> its Architecture as published.
ARCHITECTURES = {
    "st_ss": Architecture("EfficientPS-SS", "Single-Task", "1x EfficientNet-b2", "EfficientPS (SS)", "ST-SS-Net"),
    "st_de": Architecture("EfficientPS-DE", "Single-Task", "1x EfficientNet-b2", "EfficientPS (DE)", "ST-DE-Net"),
    "st_snp": Architecture("EfficientPS-SNP", "Single-Task", "1x EfficientNet-b2", "EfficientPS (SNP)",
                           "ST-SNP-Net"),
    "mtnet": Architecture("MT-Net DWA", "Multi-Task", "1x EfficientNet-b5", "MT-EfficientPS DWA (SS+DE+SNP)",
                          "MT-Net"),
    "mbmt_partial": Architecture("MBMT-Net DWA", "Multi-Backbone Multi-Task", "3x EfficientNet-b2",
                                 "MT-EfficientPS DWA (SS+DE+SNP)", "MBMT-Net"),
    "mtan": Architecture("MTAN DWA", "Multi-Task", "SegNet", "MTAN DWA (SS+DE+SNP)", "MTAN"),
}

# Trainable and total parameters as published.
PARAMETERS = {
    "st_ss": {"trainable": 10_094_853, "total": 10_094_853},
    "st_de": {"trainable": 11_268_345, "total": 11_268_345},
    "st_snp": {"trainable": 11_268_859, "total": 11_268_859},
    "mtnet": {"trainable": 32_654_444, "total": 32_654_444},
    "mbmt_partial": {"trainable": 8_722_196, "total": 32_063_398},
    "mtan": {"trainable": 44_229_076, "total": 44_229_076},
}

# Results as published. "EfficientPS" is the single-task column: each task's row comes from the
# ST-Net of that task. MTAN's losses were not published (None).
RESULTS = {
    "efficientps_st": {
        "semantic": {"loss": 2.1877, "miou": 21.23, "pix_acc": 50.06},
        "depth": {"loss": 0.6861, "abs_err": 0.6861, "rel_err": 0.2913},
        "normal": {"loss": 0.2249, "mean": 32.8582, "median": 27.2290,
                   "within_11_25": 20.49, "within_22_5": 42.22, "within_30": 54.22},
    },
    "mtnet": {
        "semantic": {"loss": 2.1990, "miou": 20.87, "pix_acc": 48.88},
        "depth": {"loss": 0.6185, "abs_err": 0.6185, "rel_err": 0.2646},
        "normal": {"loss": 0.2358, "mean": 33.9981, "median": 28.7907,
                   "within_11_25": 18.81, "within_22_5": 39.75, "within_30": 51.88},
    },
    "mbmt_partial": {
        "semantic": {"loss": 2.1605, "miou": 24.84, "pix_acc": 52.76},
        "depth": {"loss": 0.6076, "abs_err": 0.6076, "rel_err": 0.2569},
        "normal": {"loss": 0.2174, "mean": 32.0937, "median": 26.3163,
                   "within_11_25": 21.69, "within_22_5": 43.66, "within_30": 55.62},
    },
    "mtan": {
        "semantic": {"loss": None, "miou": 17.15, "pix_acc": 54.97},
        "depth": {"loss": None, "abs_err": 0.5906, "rel_err": 0.2569},
        "normal": {"loss": None, "mean": 31.60, "median": 25.46,
                   "within_11_25": 22.48, "within_22_5": 44.86, "within_30": 57.24},
    },
}

# The columns of the published relative-improvement table, in its order: the trainable and total
# parameters, then mbmt.tasks.METRICS, each as (task, metric key) with "parameters" as the task of the counts.
IMPROVEMENT_COLUMNS = (("parameters", "trainable"), ("parameters", "total"),
                       *((metric.task, metric.key) for metric in METRICS))

# The published relative-improvement table of MBMT-Net (percent, positive = MBMT-Net better), one
# row per baseline as transcribed, in IMPROVEMENT_COLUMNS order. None = not published (blank).
# The metric columns follow from RESULTS as (ours - theirs) / theirs, signed; the slides' garbled
# "-2,.8%" (abs err vs MTAN) is -2.88 by that formula. The total-parameter columns do not follow
# from PARAMETERS (which gives 27.51 % vs MTAN and 1.81 % vs MT-Net); they are kept as published.
RELATIVE_IMPROVEMENT_ROWS = {
    "mtan": [80.28, 26.32, None, 44.84, -4.02, None, -2.88, 0.00, None, -1.56, -3.36, -3.51, -2.67, -2.83],
    "efficientps_st": [None, None, 1.24, 17.00, 5.39, 11.44, 11.44, 11.81, 3.33, 2.33, 3.35, 5.86, 3.41, 2.58],
    "mtnet": [73.29, 0.20, 1.75, 19.02, 7.94, 1.76, 1.76, 2.91, 7.80, 5.60, 8.59, 15.31, 9.84, 7.21],
}

# The same numbers by name: baseline -> (task, metric key) -> percent or None, e.g.
# RELATIVE_IMPROVEMENTS["mtan"][("semantic", "miou")] == 44.84. strict: a row of the wrong length
# fails on import rather than shifting every later column.
RELATIVE_IMPROVEMENTS = {baseline: dict(zip(IMPROVEMENT_COLUMNS, row, strict=True))
                         for baseline, row in RELATIVE_IMPROVEMENT_ROWS.items()}
