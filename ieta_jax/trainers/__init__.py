"""Trainers: SFT, DPO, Bradley-Terry reward model and group-relative RL, on one shared sharded step."""

from ieta_jax.trainers.base import Trainer, TrainerConfig, TrainState
from ieta_jax.trainers.batching import PreferencePair, PromptCompletion
from ieta_jax.trainers.dpo import DPOConfig, DPOTrainer
from ieta_jax.trainers.reward import RewardConfig, RewardTrainer
from ieta_jax.trainers.rl import RLConfig, RLTrainer
from ieta_jax.trainers.sft import SFTConfig, SFTTrainer

__all__ = ["Trainer", "TrainerConfig", "TrainState", "PreferencePair", "PromptCompletion", "SFTConfig", "SFTTrainer",
           "DPOConfig", "DPOTrainer", "RewardConfig", "RewardTrainer", "RLConfig", "RLTrainer"]
