"""`abrec loop`: retrain on feedback, screen offline and off-policy, interleave, A/B, promote."""

from abrec.loop.config import LoopConfig, LoopSettings, load_loop_config
from abrec.loop.run import LoopResult, RoundRecord, run_loop

__all__ = [
    "LoopConfig",
    "LoopResult",
    "LoopSettings",
    "RoundRecord",
    "load_loop_config",
    "run_loop",
]
