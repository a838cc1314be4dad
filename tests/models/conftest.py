"""Session fixtures of the models tests: tiny random transformers checkpoints (torch CPU) in a temp dir."""
import pytest
from models_helpers import hf_configs


@pytest.fixture(scope="session")
def hf_checkpoints(tmp_path_factory):
    """name -> directory holding a tiny random HF causal LM saved with save_pretrained (fp32)."""
    import torch
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("hf_tiny")
    out = {}
    for i, (name, cfg) in enumerate(hf_configs().items()):
        torch.manual_seed(i)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        with torch.no_grad():  # non-trivial norms and biases so their mapping is tested
            for pname, p in model.named_parameters():
                if "norm" in pname or pname.endswith("bias"):
                    p.add_(0.1 * torch.randn_like(p))
        model.save_pretrained(root / name)
        out[name] = str(root / name)
    return out
