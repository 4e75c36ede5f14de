"""Fine-tuning the text encoder on behaviour data (contrastive two-tower), with overfitting controls.

torch / sentence-transformers / peft are imported only when training starts. Nothing imports
this package except the command line (`abrec train`).
"""

from abrec.train.config import LoraSettings, TrainConfig, parse_train_config
from abrec.train.data import TrainingData, ValidationSet, build_training_data, carve_validation
from abrec.train.run import train_encoder
from abrec.train.trainer import EpochRecord, Trainer, TrainResult
from abrec.train.validation import rank_metrics

__all__ = [
    "EpochRecord",
    "LoraSettings",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingData",
    "ValidationSet",
    "build_training_data",
    "carve_validation",
    "parse_train_config",
    "rank_metrics",
    "train_encoder",
]
