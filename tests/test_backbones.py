"""The language-model backbone: quiet loading, and the cache-free scoring path that
gradient checkpointing needs."""

import shutil
import warnings

import numpy as np
import pytest
import safetensors.torch
import torch
from peft import LoraConfig
from transformers.utils import logging as hf_logging

from llmregressor import LLMRegressor
from llmregressor.backbones import LanguageModelBackbone, _load_pretrained_cached, load_pretrained
from llmregressor.codecs import NormalizedCodec
from llmregressor.decoding import NumberPolicy

PROMPTS = ["a is 1, b is red\nThe target is ", "a is 22\nThe target is ", "b is x\nThe target is "]


def test_the_cache_argument_is_the_one_this_transformers_declares():
    # transformers 5.24 renamed past_key_values to cache; the name asked for must be one the
    # decoder, its layers and the mask builder all take, and the decoder's outputs carry.
    import inspect

    from transformers.masking_utils import create_causal_mask
    from transformers.modeling_outputs import BaseModelOutputWithPast
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaModel

    from llmregressor._cache_name import CACHE_ARGUMENT, output_cache

    for function in (LlamaModel.forward, LlamaDecoderLayer.forward, create_causal_mask):
        assert CACHE_ARGUMENT in inspect.signature(function).parameters
    cache = object()
    assert output_cache(BaseModelOutputWithPast(**{CACHE_ARGUMENT: cache})) is cache


def test_loading_a_local_model_draws_no_progress_bar(tiny_model_dir, capfd):
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    try:
        _load_pretrained_cached.cache_clear()
        capfd.readouterr()
        load_pretrained(str(tiny_model_dir))
        assert "Loading weights" not in capfd.readouterr().err
        # The switch is transformers' global one: it must come back on.
        assert hf_logging.is_progress_bar_enabled()
    finally:
        if not was_enabled:
            hf_logging.disable_progress_bar()


@pytest.fixture
def policy(tiny_model_dir):
    torch.manual_seed(0)
    codec = NormalizedCodec(4, 3)
    causal_lm, tokenizer = load_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    backbone = LanguageModelBackbone(
        causal_lm, tokenizer, codec.symbols, config, torch.device("cpu")
    )
    return NumberPolicy(backbone, codec.allowed_mask())


def scores_and_grads(policy, tokens):
    backbone = policy.backbone
    backbone.train(True)
    for parameter in backbone.trainable_parameters():
        parameter.grad = None
    batch = backbone.collate(backbone.tokenize(PROMPTS))
    log_probs = policy.score(batch, tokens).log_probs
    log_probs.sum().backward()
    return log_probs.detach(), [p.grad.clone() for p in backbone.trainable_parameters()]


@pytest.mark.parametrize("columns", [1, 3])
def test_checkpointed_scores_match_the_cached_path(policy, columns):
    tokens = torch.randint(0, 4, (len(PROMPTS), columns, policy.length))
    expected, expected_grads = scores_and_grads(policy, tokens)
    mlp = policy.backbone._decoder.layers[0].mlp
    calls = []
    # A pre-hook: the replay stops early, once it has what backward needs, before the
    # module returns (so a forward hook would not see it).
    hook = mlp.register_forward_pre_hook(lambda *args: calls.append(1))
    with policy.backbone.gradient_checkpointing():
        assert policy.backbone.checkpointing
        actual, grads = scores_and_grads(policy, tokens)
    hook.remove()
    assert not policy.backbone.checkpointing
    # One forward pass, and its replay in the backward pass: the layer was checkpointed.
    assert len(calls) == 2
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_decoding_under_checkpointing_keeps_its_cache(policy):
    batch = policy.backbone.collate(policy.backbone.tokenize(PROMPTS))
    expected = policy.decode(batch, greedy_columns=1).tokens
    with policy.backbone.gradient_checkpointing():
        torch.testing.assert_close(policy.decode(batch, greedy_columns=1).tokens, expected)


def test_fit_with_gradient_checkpointing_matches_without(tiny_model_dir):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 3)).round(2)
    y = X @ np.array([1.0, 2.0, -1.0])
    params = dict(
        model=tiny_model_dir,
        anchor=None,
        sft_epochs=2,
        sft_lr=1e-2,
        rl_algorithm="remax",
        rl_epochs=1,
        batch_size=8,
        n_samples=4,
        dtype="float32",
        random_state=0,
    )
    plain = LLMRegressor(**params).fit(X, y)
    checkpointed = LLMRegressor(**params, gradient_checkpointing=True).fit(X, y)
    expected = plain.policy_.trainable_weights()
    for name, value in checkpointed.policy_.trainable_weights().items():
        np.testing.assert_allclose(value, expected[name], rtol=0, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(checkpointed.predict(X), plain.predict(X))
    assert not checkpointed.policy_.policy.backbone.checkpointing  # off again after SFT


def test_wrapping_the_model_in_lora_raises_no_library_warning(tiny_model_dir):
    # Every fit wraps the model: a third-party deprecation notice there would reach users
    # on each call (the test config hides FutureWarnings from transformers otherwise).
    causal_lm, tokenizer = load_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LanguageModelBackbone(causal_lm, tokenizer, ("0", "1"), config, torch.device("cpu"))
    assert [str(w.message) for w in caught] == []


def test_an_embedded_models_weights_hash_is_kept_next_to_it(tiny_model_dir, tmp_path, monkeypatch):
    # keep_hash is what an embedded model's dequantized folder gets.
    from llmregressor import backbones

    folder = shutil.copytree(tiny_model_dir, tmp_path / "dequantized")
    source = str(folder)

    def fingerprint_now():
        return backbones._load_pretrained_cached(source, backbones._folder_signature(source), True)[
            2
        ]

    first = fingerprint_now()
    # The same model in another folder has the same fingerprint.
    assert first == backbones.fingerprint(load_pretrained(tiny_model_dir)[0])
    assert (folder / backbones.WEIGHTS_HASH_FILE).is_file()
    # Another process reads the stored hash instead of hashing the weights again...
    backbones._load_pretrained_cached.cache_clear()
    with monkeypatch.context() as patch:
        patch.setattr(backbones, "_weights_digest", lambda model: pytest.fail("rehashed"))
        assert fingerprint_now() == first
    # ... until a file of the folder is replaced.
    tensors = safetensors.torch.load_file(folder / "model.safetensors")
    name = "model.layers.1.mlp.down_proj.weight"
    tensors[name] = tensors[name] + 1
    safetensors.torch.save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    assert fingerprint_now() != first


@pytest.mark.parametrize(
    ("capability", "expected"), [((7, 0), torch.float32), ((8, 0), torch.bfloat16)]
)
def test_auto_dtype_takes_bfloat16_only_on_gpus_that_compute_it_natively(
    monkeypatch, capability, expected
):
    from llmregressor.backbones import resolve_compute_dtype

    # A V100 (7.0) emulates bfloat16, which torch.cuda.is_bf16_supported() still accepts.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert resolve_compute_dtype("auto", torch.device("cuda")) == expected
    assert resolve_compute_dtype("float32", torch.device("cuda")) == torch.float32


def test_a_gpu_index_the_machine_lacks_is_refused(monkeypatch):
    from llmregressor.fitted_policy import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="has 1 CUDA device"):
        resolve_device("cuda:1")


def test_auto_attention_is_eager_for_gradients_on_cpu_and_sdpa_elsewhere():
    from llmregressor.backbones import resolve_attn_implementation

    assert resolve_attn_implementation("auto", torch.device("cpu")) == ("eager", "sdpa")
    assert resolve_attn_implementation("auto", torch.device("cuda")) == ("sdpa", "sdpa")
    assert resolve_attn_implementation("sdpa", torch.device("cpu")) == ("sdpa", "sdpa")
    assert resolve_attn_implementation("eager", torch.device("cpu")) == ("eager", "eager")


def test_eager_and_sdpa_attention_predict_alike(tiny_model_dir, houses):
    from llmregressor import LLMRegressor

    X, y = houses(30)
    fits = {
        kind: LLMRegressor(
            model=tiny_model_dir,
            anchor=None,  # rows encoded below without an estimate
            attn_implementation=kind,
            # In float32 the kernels agree to rounding; bfloat16 rounds them apart.
            dtype="float32",
            sft_epochs=1,
            rl_algorithm=None,
            interval_calibration=None,
            n_samples=4,
            random_state=0,
        ).fit(X, y)
        for kind in ("eager", "sdpa")
    }
    backbones = {kind: reg.policy_.policy.backbone for kind, reg in fits.items()}
    assert backbones["eager"].model.config._attn_implementation == "eager"
    assert backbones["sdpa"].model.config._attn_implementation == "sdpa"
    # The same adapters in both (each fit trained its own).
    backbones["eager"].load_adapter_state(backbones["sdpa"].adapter_state())
    batch = backbones["eager"].collate(
        backbones["eager"].encode_rows(X.to_numpy(dtype=object)).items
    )
    hidden = {kind: backbone.encode(batch)[1] for kind, backbone in backbones.items()}
    torch.testing.assert_close(hidden["eager"], hidden["sdpa"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("lora_layers", [None, 1])
def test_auto_attention_switches_kernel_with_the_grad_mode_on_cpu(
    tiny_model_dir, houses, lora_layers
):
    from llmregressor import LLMRegressor

    X, y = houses(30)
    reg = LLMRegressor(
        model=tiny_model_dir,
        anchor=None,  # rows encoded below without an estimate
        lora_layers=lora_layers,
        sft_epochs=1,
        rl_algorithm=None,
        interval_calibration=None,
        n_samples=2,
        random_state=0,
    ).fit(X, y)
    backbone = reg.policy_.policy.backbone
    attention = backbone.model.get_base_model().model.layers[-1].self_attn
    seen = []
    attention.register_forward_pre_hook(
        lambda module, args: seen.append(
            (torch.is_grad_enabled(), module.config._attn_implementation)
        )
    )
    batch = backbone.collate(backbone.encode_rows(X.to_numpy(dtype=object)).items[:4])
    with torch.no_grad():
        backbone.encode(batch)
    backbone.encode(batch)
    with torch.no_grad():
        backbone.encode(batch)
    assert seen == [(False, "sdpa"), (True, "eager"), (False, "sdpa")]
    # and predict runs (without gradients) on the fast inference kernel
    seen.clear()
    reg.predict(X[:3])
    assert seen and set(seen) == {(False, "sdpa")}


def test_a_folder_from_before_the_attention_choice_keeps_sdpa(tiny_model_dir):
    from llmregressor.backbones import LanguageModelSpec
    from llmregressor.serialize import RowSerializer

    config = {
        "model": tiny_model_dir,
        "lora": {"r": 2},
        "symbols": list("0123456789"),
        "dtype": "float32",
        "base_fingerprint": None,
    }
    spec = LanguageModelSpec.from_config(
        config, RowSerializer(["a"], None, 4, "unknown", "compact")
    )
    assert spec.attn_implementation == "sdpa" and spec.lora_layers is None
