"""Every architecture of the paper: ST-Net, MT-Net, MBMT-Net (EfficientPS-style, timm backbones) and MTAN.

One file per model family (efficientps, multibackbone, mtan) built from small blocks (layers)
over timm backbones (encoder); factory builds them from params and defines the model file.
"""

from mbmt.models.base import TaskModel
from mbmt.models.factory import build_model, count_parameters, create_model, load_model, save_model

__all__ = ["TaskModel", "build_model", "count_parameters", "create_model", "load_model", "save_model"]
