"""Where every stage reads and writes, relative to the project root (the working directory).

Snakemake rules and dvc.yaml stages declare exactly these paths; stage commands take none of
them as arguments, so the two front ends run identical commands.
"""

from pathlib import Path

PARAMS_FILE = Path("params.yaml")
DATA_DIR = Path("data")
DOWNLOAD_DIR = DATA_DIR / "downloads"  # partial downloads live here so a retry resumes; not a stage output
RAW_DIR = DATA_DIR / "raw"  # fetch: the dataset in MTAN's one-.npy-per-sample layout
PROCESSED_DIR = DATA_DIR / "processed"  # preprocess: one HDF5 file per split + manifest.json
WEIGHTS_DIR = DATA_DIR / "weights"  # weights: the backbones' ImageNet weights (mbmt.models.pretrained)
MODELS_DIR = Path("models")
RUNS_DIR = Path("runs")  # resumable training state, keyed by a hash of the run's settings; not versioned
METRICS_DIR = Path("metrics")
REPORTS_DIR = Path("reports")

SPLITS = ("train", "test")
REAL_SPLIT = "real"  # the NYU raw-form images of data.real_images, if set


def split_file(split: str) -> Path:
    return PROCESSED_DIR / f"{split}.h5"


def manifest_file() -> Path:
    return PROCESSED_DIR / "manifest.json"


def weights_file(backbone: str) -> Path:
    """The ImageNet weights a model with ``pretrained: true`` starts backbone ``backbone`` from."""
    return WEIGHTS_DIR / f"{backbone}.safetensors"


def weights_record(backbone: str) -> Path:
    """Where that file came from: timm's model and tag, the source, its sha256 and size."""
    return WEIGHTS_DIR / f"{backbone}.json"


def run_dir(name: str, seed: int) -> Path:
    """What training model ``name`` with seed ``seed`` publishes: model.pt and live/."""
    return MODELS_DIR / name / f"seed{seed}"


def model_file(name: str, seed: int) -> Path:
    """The trained weights and the settings that built them (see mbmt.training.checkpoint)."""
    return run_dir(name, seed) / "model.pt"


def live_dir(name: str, seed: int) -> Path:
    """The training's DVCLive log (metrics.json, plots/metrics/**.tsv)."""
    return run_dir(name, seed) / "live"


def metrics_file(name: str, seed: int) -> Path:
    """mbmt evaluate's split metrics of one trained model."""
    return METRICS_DIR / name / f"seed{seed}.json"


def per_image_file(name: str, seed: int) -> Path:
    """mbmt evaluate's per-image sums and confusion matrices (see mbmt.evaluation)."""
    return METRICS_DIR / name / f"seed{seed}.images.npz"


# The report (mbmt report): the index a reader opens, the paper's tables (Markdown and CSV),
# the figures, and where every number came from.
REPORT_INDEX = REPORTS_DIR / "README.md"
REPORT_TABLES_DIR = REPORTS_DIR / "tables"
REPORT_FIGURES_DIR = REPORTS_DIR / "figures"
REPORT_PROVENANCE = REPORTS_DIR / "provenance.json"
