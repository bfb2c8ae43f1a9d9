"""Gymnasium environments for tuning the ISP with a quality reward.

Importing this package registers ``IspTuning-v0`` (see :class:`envs.IspTuningEnv`).
"""
import gymnasium as gym

from envs.isp_tuning import MODES, IspTuningEnv
from envs.rewards import REWARDS, RewardEntry, RewardModel, RewardOutput, create_reward, register_reward, reward_names

__all__ = [
    "ENV_ID",
    "IspTuningEnv",
    "IspTuningVecEnv",
    "MODES",
    "REWARDS",
    "RewardEntry",
    "RewardModel",
    "RewardOutput",
    "create_reward",
    "register_reward",
    "reward_names",
]

ENV_ID = "IspTuning-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="envs.isp_tuning:IspTuningEnv", max_episode_steps=64)


def __getattr__(name):  # the VecEnv pulls in stable-baselines3; import it only when asked for
    if name == "IspTuningVecEnv":
        from envs.vec_env import IspTuningVecEnv

        return IspTuningVecEnv
    raise AttributeError(name)
