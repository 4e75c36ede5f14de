"""Scale-out on Ray: catalogue encoding, batch scoring and offline evaluation as Ray jobs.

Each function gives the same result as its single-process counterpart (see the module
docstrings for what "same" means for each) and connects with `ray_session` (a local
instance, `RAY_ADDRESS`, or an explicit cluster address). Needs `pip install 'abrec[ray]'`.
"""

from abrec.scale.encode import EncoderSpec, encode_catalog_ray
from abrec.scale.evaluate import RayChunkRunner, evaluate_ray
from abrec.scale.score import BatchRecommendations, load_model, score_users_ray
from abrec.scale.session import ray_session, require_ray

__all__ = [
    "BatchRecommendations",
    "EncoderSpec",
    "RayChunkRunner",
    "encode_catalog_ray",
    "evaluate_ray",
    "load_model",
    "ray_session",
    "require_ray",
    "score_users_ray",
]
