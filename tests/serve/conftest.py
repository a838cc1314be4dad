"""A tiny random Llama + BPE tokenizer (with a chat template) saved with save_pretrained, and the project's
OpenAI server over it on a free local port, shared by the serving, API-policy and judge tests."""
import pytest
from serve_helpers import CHAT_TEMPLATE, MODEL_NAME


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    from flax import nnx

    from ieta_jax import models
    from ieta_jax.data import synthetic
    from ieta_jax.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("serve_ckpt")
    tasks = synthetic.make_tasks("train", seed=0)
    tok = train_tokenizer([t.prompt for t in tasks], str(root / "tok"), vocab_size=320)
    tok.chat_template = CHAT_TEMPLATE
    cfg = models.ModelConfig(vocab_size=384, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                             tie_word_embeddings=True, model_type="llama", eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
    model = models.CausalLM(cfg, rngs=nnx.Rngs(0))
    path = root / MODEL_NAME
    models.save_pretrained(model, str(path), tokenizer=tok)
    return str(path)


@pytest.fixture(scope="session")
def tiny_policy(tiny_checkpoint):
    """(model, tokenizer) loaded in this process the way the loop loads a policy."""
    from ieta_jax import models

    return models.from_pretrained(tiny_checkpoint), models.load_tokenizer(tiny_checkpoint)


@pytest.fixture(scope="session")
def server(tiny_policy):
    from ieta_jax import serve

    model, tok = tiny_policy
    with serve.Server(serve.API(serve.Engine(model, tok, max_batch_rows=64), MODEL_NAME), port=0) as srv:
        yield srv
