"""The in-repo DeepSeek-V3 architecture: MLA, DeepSeekMoE with auxiliary-loss-free balancing,
multi-token prediction, HF-format checkpoints, accounting and an inference engine."""

from model.config import ModelConfig
from model.transformer import Transformer

__all__ = ["ModelConfig", "Transformer"]
