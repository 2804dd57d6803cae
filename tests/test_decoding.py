import numpy as np
import pytest
import torch
from peft import LoraConfig

from llmregressor.backbones import LanguageModelBackbone, load_pretrained, symbol_token_ids
from llmregressor.codecs import NormalizedCodec, ScientificCodec
from llmregressor.decoding import NumberPolicy


def make_policy(model_dir, codec):
    torch.manual_seed(0)
    causal_lm, tokenizer = load_pretrained(model_dir)
    # Non-zero adapter B so the adapters actually change the distribution.
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    backbone = LanguageModelBackbone(
        causal_lm, tokenizer, codec.symbols, config, torch.device("cpu")
    )
    return NumberPolicy(backbone, codec.allowed_mask())


PROMPTS = ["a is 1, b is red\nThe target is ", "a is 22\nThe target is ", "b is x\nThe target is "]


@pytest.fixture(params=["normalized", "scientific"])
def policy(request, tiny_model_dir):
    codec = NormalizedCodec(4, 3) if request.param == "normalized" else ScientificCodec(1, 2)
    return make_policy(tiny_model_dir, codec)


def batch_of(policy, prompts=PROMPTS):
    return policy.backbone.collate(policy.backbone.tokenize(prompts))


def test_symbols_are_single_tokens(tiny_model_dir):
    _, tokenizer = load_pretrained(tiny_model_dir)
    ids = symbol_token_ids(tokenizer, tuple("0123456789+-"))
    assert len(set(ids)) == 12


def test_symbol_without_single_token_is_a_clear_error(tiny_model_dir):
    _, tokenizer = load_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match="single token"):
        symbol_token_ids(tokenizer, ("10",))


def test_decoded_tokens_obey_grammar_and_log_probs_match_teacher_forcing(policy):
    batch = batch_of(policy)
    uniforms = torch.rand((3, 5, policy.length), generator=torch.Generator().manual_seed(1))
    rollout = policy.decode(batch, uniforms.double(), greedy_columns=1)
    assert rollout.tokens.shape == (3, 6, policy.length)
    allowed = policy.allowed[torch.arange(policy.length), rollout.tokens]
    assert allowed.all()
    scores = policy.score(batch, rollout.tokens)
    log_probs, entropy = scores.log_probs, scores.entropy
    torch.testing.assert_close(log_probs, rollout.log_probs, atol=1e-5, rtol=1e-5)
    assert (entropy >= 0).all()
    # The sequence log-prob is the sum of masked per-step log-probs, each <= 0.
    assert (log_probs <= 0).all()


def test_teacher_forcing_equals_full_sequence_forward(policy):
    """Shared prompt cache + expansion gives the same log-probs as re-encoding everything."""
    batch = batch_of(policy)
    tokens = policy.decode(batch, torch.rand((3, 2, policy.length)).double()).tokens
    log_probs = policy.score(batch, tokens).log_probs
    backbone = policy.backbone
    for row, prompt in enumerate(PROMPTS):
        for col in range(2):
            ids = backbone.tokenize([prompt])[0] + backbone.symbol_ids[tokens[row, col]].tolist()
            out = backbone._decoder(input_ids=torch.tensor([ids]))
            hidden = out.last_hidden_state[0, -policy.length - 1 : -1]
            expected = policy.log_softmax(hidden, slice(None))
            expected = expected.gather(-1, tokens[row, col][:, None])[:, 0]
            torch.testing.assert_close(log_probs[row, col], expected, atol=1e-5, rtol=1e-5)


def test_gradient_reaches_only_adapters(policy):
    batch = batch_of(policy)
    tokens = policy.decode(batch, greedy_columns=1).tokens
    log_probs = policy.score(batch, tokens).log_probs
    log_probs.sum().backward()
    trainable = policy.backbone.trainable_parameters()
    assert trainable and all(
        "lora_" in n for n, p in policy.backbone.model.named_parameters() if p.requires_grad
    )
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)


def test_greedy_is_the_argmax_path(policy):
    batch = batch_of(policy)
    greedy = policy.decode(batch, greedy_columns=1)
    # A uniform of 0 picks the first allowed symbol, so greedy differs from it in general;
    # greedy must have the highest log-prob at every position along its own path.
    log_probs = policy.score(batch, greedy.tokens).log_probs
    torch.testing.assert_close(log_probs, greedy.log_probs)


def test_inverse_cdf_sampling_matches_the_distribution(tiny_model_dir):
    policy = make_policy(tiny_model_dir, NormalizedCodec(3, 1))
    batch = batch_of(policy, PROMPTS[:1])
    n = 4000
    uniforms = torch.rand((1, n, 1), generator=torch.Generator().manual_seed(0)).double()
    tokens = policy.decode(batch, uniforms, temperature=1.0).tokens[0, :, 0]
    freq = np.bincount(tokens.numpy(), minlength=3) / n
    state, hidden = policy.backbone.encode(batch)
    probs = policy.log_softmax(hidden, 0).exp()[0].detach().numpy()
    np.testing.assert_allclose(freq, probs, atol=0.03)


def test_forbidden_symbols_are_never_sampled(tiny_model_dir):
    policy = make_policy(tiny_model_dir, ScientificCodec(1, 2))
    batch = batch_of(policy)
    # Uniforms at the extremes are where rounding could pick a forbidden neighbour.
    uniforms = torch.tensor([0.0, 1 - 1e-16, 0.5]).double().repeat(3, 1)[:, :, None]
    rollout = policy.decode(batch, uniforms.expand(3, 3, policy.length).contiguous())
    assert policy.allowed[torch.arange(policy.length), rollout.tokens].all()


def test_decoding_never_builds_full_vocabulary_logits(policy):
    calls = []
    head = policy.backbone.model.get_base_model().get_output_embeddings()
    handle = head.register_forward_hook(lambda *args: calls.append(1))
    try:
        batch = batch_of(policy)
        rollout = policy.decode(batch, torch.rand((3, 2, policy.length)).double(), 1)
        policy.score(batch, rollout.tokens)
    finally:
        handle.remove()
    assert calls == []


def test_exact_distribution_matches_teacher_forcing_of_every_outcome(policy):
    # normalized base 4 x 3 digits: 64 outcomes; scientific 1 + 2 digits: 2*2*10*100 = 4000.
    batch = batch_of(policy)
    codes, probs = policy.exact_distribution(batch)
    assert codes.shape == (policy.n_outcomes(), policy.length)
    assert len(torch.unique(codes, dim=0)) == len(codes)
    assert policy.allowed[torch.arange(policy.length), codes].all()
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(3, dtype=torch.float64))
    scored = policy.score(batch, codes.expand(3, -1, -1)).log_probs.sum(-1).double().exp()
    torch.testing.assert_close(probs, scored, atol=1e-6, rtol=1e-4)
