"""Shared pieces of the TRL parity tests: a tokenizer whose words are token ids, a tiny random HF Llama, and
parameter comparison through the HF export (a uniquely named module, so no clash with other areas' helpers)."""

import os

import numpy as np

PAD, UNK, EOS = 0, 1, 2
VOCAB = 40
LLAMA = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=False,
             bos_token_id=UNK, eos_token_id=EOS, pad_token_id=PAD)


def word_tokenizer():
    """Word ``t<i>`` is token id ``i`` (``</s>`` = EOS), so TRL tokenises text back to exactly our ids."""
    import transformers
    from tokenizers import Tokenizer, models as tok_models, pre_tokenizers

    vocab = {"<pad>": PAD, "<unk>": UNK, "</s>": EOS, **{f"t{i}": i for i in range(3, VOCAB)}}
    tk = Tokenizer(tok_models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>",
                                                eos_token="</s>")


def text(ids):
    return "".join(f" t{i}" if i != EOS else " </s>" for i in ids)


def save_random_llama(directory, seed=0, sequence_classification=False, **overrides):
    """A tiny random HF Llama (causal LM or 1-label reward model) saved to ``directory``."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(**{**LLAMA, **overrides}, num_labels=1)
    cls = transformers.LlamaForSequenceClassification if sequence_classification else transformers.LlamaForCausalLM
    cls(cfg).to(torch.float32).save_pretrained(directory)
    return str(directory)


def trl_args(config_cls, out_dir, **kw):
    """TRL config with everything that is not under test pinned: CPU, fp32, constant LR, every step logged."""
    base = dict(output_dir=str(out_dir), use_cpu=True, bf16=False, report_to=[], save_strategy="no",
                logging_steps=1, lr_scheduler_type="constant", dataloader_num_workers=0, disable_tqdm=True, seed=0,
                max_grad_norm=1.0, warmup_steps=0)
    base.update(kw)
    return config_cls(**base)


def assert_params_close(our_model, torch_model, initial_dir, tmp_dir, max_rel=2e-2, mean_rel=1e-3):
    """Every tensor within float noise of TRL's, measured against its own update (trained - initial).

    Adam divides by sqrt(v), so an element whose gradient is at rounding level can move by a sizeable part of
    the learning rate on one side only: the worst element is held to ``max_rel`` x the tensor's largest update,
    the mean absolute difference to ``mean_rel`` x its mean absolute update.
    """
    from safetensors.numpy import load_file

    from ieta_jax import models

    models.save_pretrained(our_model, str(tmp_dir))
    ours = load_file(os.path.join(str(tmp_dir), "model.safetensors"))
    init = load_file(os.path.join(initial_dir, "model.safetensors"))
    theirs = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    compared = 0
    for name, t in theirs.items():
        if name not in ours:  # e.g. rotary buffers
            continue
        update = np.abs(t - init[name])
        err = np.abs(ours[name] - t)
        assert update.max() > 0, name
        assert err.max() <= max_rel * update.max(), (name, "max", float(err.max()), float(update.max()))
        assert err.mean() <= mean_rel * update.mean(), (name, "mean", float(err.mean()), float(update.mean()))
        compared += 1
    assert compared == len(ours), (compared, sorted(ours))
