"""The three dense tasks, their head widths and NYUv2's 13 classes (MTAN conventions)."""

TASKS = ("semantic", "depth", "normal")

# The paper's abbreviations, used in reports.
TASK_ABBREVIATIONS = {"semantic": "SS", "depth": "DE", "normal": "SNP"}

TASK_CHANNELS = {"semantic": 13, "depth": 1, "normal": 3}

NUM_CLASSES = 13
IGNORE_LABEL = -1

# Order of MTAN's labels 0..12 (NYUv2 13-class set of Handa et al.; label PNG value minus 1).
CLASS_NAMES = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects",
    "picture", "sofa", "table", "tv", "wall", "window",
)
