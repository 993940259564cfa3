"""lmbook.finetune and lmbook.instructions against the implementations people use: LoRALinear equals
peft's lora.Linear, and a LoRA GPT equals peft's LoRA on Hugging Face's GPT2LMHeadModel; dpo_loss
equals trl's DPO trainer's loss; NgramNaiveBayes and macro_f1 equal scikit-learn's. Then the
properties: merged = unmerged, only adapters get gradients, prompt masking leaves out exactly the
prompt, the generators' answers pass their own checkers and repeat with the seed, bad input is a
clear error."""

import math
import random
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmbook import finetune as ft
from lmbook import instructions
from lmbook.gpt import GPT, GPTConfig

# Tolerances: one float32 layer agrees with peft to ~1e-7 (the same products in the same order);
# a whole float32 GPT's logits to ~1e-6 (summation order differs between Conv1D's addmm and
# Linear); the DPO loss is elementwise arithmetic on float64: 1e-12.
LAYER_ATOL, MODEL_ATOL, DPO_ATOL = 1e-6, 1e-5, 1e-12


def tiny_gpt(seed: int = 0, bias: bool = True, vocab_size: int = 50) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16, bias=bias))


def randomise_lora(model: nn.Module, seed: int) -> None:
    """B starts at zero (the adapter is then a no-op): make every adapter weight random."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ft.LoRALinear):
                m.lora_A.copy_(torch.randn(m.lora_A.shape, generator=g) * 0.3)
                m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g) * 0.3)


# ---- LoRA against peft ---------------------------------------------------------------------------------------

peft = pytest.importorskip("peft")


@pytest.mark.parametrize("rank, alpha", [(1, 1.0), (4, 8.0), (8, 32.0)])
def test_lora_linear_equals_peft(rank, alpha):
    torch.manual_seed(rank)
    base = nn.Linear(24, 40)
    holder = nn.Sequential()
    holder.add_module("proj", nn.Linear(24, 40))
    holder.proj.load_state_dict(base.state_dict())
    theirs = peft.get_peft_model(holder, peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=["proj"],
                                                         lora_dropout=0.0))
    ours = ft.LoRALinear(base, rank, alpha)
    randomise_lora(nn.Sequential(ours), seed=rank)
    layer = theirs.base_model.model.proj
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(ours.lora_A)
        layer.lora_B["default"].weight.copy_(ours.lora_B)
    x = torch.randn(5, 7, 24)
    assert layer.scaling["default"] == ours.scaling == alpha / rank
    torch.testing.assert_close(ours(x), theirs(x), atol=LAYER_ATOL, rtol=0)
    layer.merge()
    ours.merge()
    torch.testing.assert_close(ours.base.weight, layer.base_layer.weight, atol=LAYER_ATOL, rtol=0)


def test_lora_gpt_equals_peft_on_gpt2():
    transformers = pytest.importorskip("transformers")  # noqa: F841
    from lmbook import hf

    gpt = tiny_gpt(1)
    hf_model = hf.to_hf(gpt)
    names = ft.inject_lora(gpt, rank=4, alpha=8.0)
    randomise_lora(gpt, seed=2)
    theirs = peft.get_peft_model(hf_model, peft.LoraConfig(r=4, lora_alpha=8.0, lora_dropout=0.0, fan_in_fan_out=True,
                                                           target_modules=["c_attn", "c_proj", "c_fc"]))
    modules = dict(theirs.base_model.model.named_modules())
    assert len(names) == 8
    with torch.no_grad():
        for name in names:                 # transformer.h.0.attn.c_attn: the same name in both models
            ours = gpt.get_submodule(name)
            modules[name].lora_A["default"].weight.copy_(ours.lora_A)
            modules[name].lora_B["default"].weight.copy_(ours.lora_B)
    idx = torch.randint(0, 50, (3, 16))
    gpt.eval()
    theirs.eval()
    torch.testing.assert_close(gpt(idx)[0], theirs(idx).logits, atol=MODEL_ATOL, rtol=0)


def test_merged_equals_unmerged_and_unmerge_restores():
    gpt = tiny_gpt(3)
    ft.inject_lora(gpt, rank=2)
    randomise_lora(gpt, seed=4)
    gpt.eval()
    idx = torch.randint(0, 50, (2, 12))
    before = gpt(idx)[0]
    layers = [m for m in gpt.modules() if isinstance(m, ft.LoRALinear)]
    weights = [m.base.weight.clone() for m in layers]
    for m in layers:
        m.merge()
    torch.testing.assert_close(gpt(idx)[0], before, atol=1e-6, rtol=0)
    for m in layers:
        m.unmerge()
    for m, w in zip(layers, weights):
        torch.testing.assert_close(m.base.weight, w, atol=1e-6, rtol=0)
    ft.merge_lora(gpt)
    assert not any(isinstance(m, ft.LoRALinear) for m in gpt.modules()), "merge_lora puts the plain Linear back"
    torch.testing.assert_close(gpt(idx)[0], before, atol=1e-6, rtol=0)


def test_lora_starts_as_the_pretrained_model_and_only_adapters_get_gradients():
    gpt, reference = tiny_gpt(5), tiny_gpt(5)
    idx = torch.randint(0, 50, (2, 10))
    ft.inject_lora(gpt, rank=3)
    torch.testing.assert_close(gpt(idx)[0], reference(idx)[0], atol=0, rtol=0)  # B = 0: exactly the same
    _, loss = gpt(idx, idx)
    loss.backward()
    for name, p in gpt.named_parameters():
        if "lora_" in name:
            assert p.requires_grad
            if name.endswith("lora_B"):
                assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, f"{name} is frozen and gets no gradient"
    trainable, total = ft.count_parameters(gpt)
    d, r = 16, 3
    per_layer = r * (d + 3 * d) + r * (d + d) + r * (d + 4 * d) + r * (4 * d + d)   # c_attn, c_proj, c_fc, mlp.c_proj
    assert trainable == 2 * per_layer
    assert total == reference.num_params() + trainable


def test_optimizer_state_is_two_moments_per_trainable_parameter():
    gpt = tiny_gpt(6)
    ft.inject_lora(gpt, rank=2)
    opt = torch.optim.AdamW([p for p in gpt.parameters() if p.requires_grad])
    _, loss = gpt(torch.randint(0, 50, (2, 8)), torch.randint(0, 50, (2, 8)))
    loss.backward()
    opt.step()
    assert ft.optimizer_state_bytes(opt) == 2 * 4 * ft.count_parameters(gpt)[0]


# ---- DPO against trl -----------------------------------------------------------------------------------------

trl = pytest.importorskip("trl")


def trl_dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta):
    """trl's DPOTrainer._compute_loss (sigmoid loss, reference log-probabilities precomputed), run on
    sequence log-probabilities: a stand-in model returns them as the per-token log-probabilities of
    a one-token completion, and a stand-in trainer holds the settings the method reads."""
    from trl import DPOTrainer

    B = len(chosen)
    logps = torch.cat([chosen, rejected])                                # trl's batch: [chosen; rejected]
    per_token = torch.stack([torch.zeros_like(logps), logps], dim=1)      # (2B, 2): only the last token counts

    def model(**kwargs):
        return SimpleNamespace(log_probs=per_token, entropy=torch.zeros_like(per_token),
                               mean_logits=torch.zeros_like(per_token),
                               is_top1=torch.zeros_like(per_token, dtype=torch.bool))
    model.training = True
    accelerator = SimpleNamespace(device="cpu", gather_for_metrics=lambda t: t, gather=lambda t: t)
    trainer = SimpleNamespace(model=model, accelerator=accelerator, aux_loss_enabled=False, ld_alpha=None,
                              precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=["sigmoid"],
                              loss_weights=[1.0], beta=beta, label_smoothing=0.0, use_weighting=False,
                              _metrics={"train": defaultdict(list)}, _total_train_tokens=0, _tp_size=1)
    inputs = {"input_ids": torch.zeros(2 * B, 3, dtype=torch.long), "attention_mask": torch.ones(2 * B, 3),
              "completion_mask": torch.tensor([[0, 0, 1]] * (2 * B)),
              "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected}
    loss = DPOTrainer._compute_loss(trainer, model, inputs, return_outputs=False)
    return loss, trainer._metrics["train"]


@pytest.mark.parametrize("beta", [0.01, 0.1, 0.5, 2.0])
def test_dpo_loss_equals_trl(beta):
    g = torch.Generator().manual_seed(int(beta * 100))
    c, r, rc, rr = (-20 * torch.rand(64, generator=g, dtype=torch.float64) for _ in range(4))
    ours = ft.dpo_loss(c, r, rc, rr, beta)
    theirs, metrics = trl_dpo_loss(c, r, rc, rr, beta)
    assert abs(ours.loss.item() - theirs.item()) < DPO_ATOL
    assert abs(ours.chosen_rewards.mean().item() - metrics["rewards/chosen"][-1]) < DPO_ATOL
    assert abs((ours.chosen_rewards - ours.rejected_rewards).mean().item() - metrics["rewards/margins"][-1]) < DPO_ATOL


def test_dpo_loss_is_log_2_at_the_start_and_falls_with_the_margin():
    logps = -torch.rand(10) * 30
    other = -torch.rand(10) * 30
    out = ft.dpo_loss(logps, other, logps.clone(), other.clone(), beta=0.3)
    assert abs(out.loss.item() - math.log(2)) < 1e-7
    better = ft.dpo_loss(logps + 1, other - 1, logps, other, beta=0.3)
    assert better.loss < out.loss and bool((better.chosen_rewards > 0).all())


def test_sequence_logprobs_sums_the_unmasked_targets():
    gpt = tiny_gpt(7)
    x = torch.randint(0, 50, (2, 9))
    y = torch.randint(0, 50, (2, 9))
    y[0, :4] = -100
    y[1, 7:] = -100
    logp = gpt(x)[0].log_softmax(-1)
    expected = [sum(logp[b, t, y[b, t]] for t in range(9) if y[b, t] != -100) for b in range(2)]
    torch.testing.assert_close(ft.sequence_logprobs(gpt, x, y), torch.stack(expected), atol=1e-5, rtol=0)


def test_train_dpo_raises_the_margin_on_its_pairs():
    torch.manual_seed(0)
    tok = ft.CharTokenizer(list("abcdefgh"), ft.ChatTemplate().special_tokens)
    gpt = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16))
    tmpl = ft.ChatTemplate()
    prompts = ["ab", "cd", "ef", "gh"] * 4
    chosen = ft.sft_tensors([(p, p[::-1]) for p in prompts], tok, tmpl)
    rejected = ft.sft_tensors([(p, p) for p in prompts], tok, tmpl)
    ref = (ft.batched_sequence_logprobs(gpt, *chosen), ft.batched_sequence_logprobs(gpt, *rejected))
    history = ft.train_dpo(gpt, chosen, rejected, ref, beta=0.5, steps=30, batch_size=8, lr=3e-3,
                           generator=torch.Generator().manual_seed(0))
    assert abs(history.loss[0] - math.log(2)) < 1e-5
    assert history.margin[-1] > 1.0 and history.accuracy[-1] == 1.0


# ---- prompt masking --------------------------------------------------------------------------------------------


def test_prompt_masking_leaves_out_exactly_the_prompt():
    tok = ft.CharTokenizer(list("abc12"), ["<u>", "<a>", "<e>"])
    tmpl = ft.ChatTemplate("<u>{prompt}<a>{answer}<e>", ("<u>", "<a>", "<e>"))
    X, Y = ft.sft_tensors([("ab", "12"), ("c", "1")], tok, tmpl, mask_prompt=True, pad_id=0)
    # row 0: tokens <u> a b <a> 1 2 <e> -> ids 5 0 1 6 3 4 7
    assert X.tolist() == [[5, 0, 1, 6, 3, 4], [5, 2, 6, 3, 0, 0]]
    assert Y.tolist() == [[-100, -100, -100, 3, 4, 7], [-100, -100, 3, 7, -100, -100]]
    X2, Y2 = ft.sft_tensors([("ab", "12"), ("c", "1")], tok, tmpl, mask_prompt=False, pad_id=0)
    assert torch.equal(X2, X) and Y2.tolist() == [[0, 1, 6, 3, 4, 7], [2, 6, 3, 7, -100, -100]]
    # the loss then counts the answer tokens only: a model's loss equals the mean over those positions
    gpt = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=1, n_embd=8))
    logits, loss = gpt(X, Y)
    keep = Y != -100
    manual = F.cross_entropy(logits[keep], Y[keep])
    assert abs(loss.item() - manual.item()) < 1e-6 and keep.sum() == 5  # 3 + 2 answer tokens


def test_sft_batches_with_replay_add_whole_windows():
    tok = ft.CharTokenizer(list("abc12"), ["<u>", "<a>", "<e>"])
    tmpl = ft.ChatTemplate("<u>{prompt}<a>{answer}<e>", ("<u>", "<a>", "<e>"))
    X, Y = ft.sft_tensors([("ab", "12"), ("c", "1"), ("a", "2")], tok, tmpl)
    replay = torch.arange(40) % 5
    x, y = next(ft.sft_batches(X, Y, 3, torch.Generator().manual_seed(0), replay=replay, replay_rows=3, block_size=8))
    assert x.shape == y.shape == (6, 8)
    assert torch.equal(y[3:], (x[3:] + 1) % 5), "replayed windows: every next token is a target"
    assert sorted((y[:3] != -100).sum(1).tolist()) == [2, 2, 3], "the three examples' answer targets come first"


def test_sft_batches_group_rows_of_similar_length_and_visit_each_once():
    tok = ft.CharTokenizer(list("abc12"), ["<u>", "<a>", "<e>"])
    tmpl = ft.ChatTemplate("<u>{prompt}<a>{answer}<e>", ("<u>", "<a>", "<e>"))
    pairs = [("a" * (i % 30 + 1) + "b" * (i // 30), "1") for i in range(64)]   # 64 different prompts
    X, Y = ft.sft_tensors(pairs, tok, tmpl, pad_id=2)                      # 'c' occurs in no prompt

    def unpadded(rows):
        return sorted(tuple(r[: max(i for i, v in enumerate(r) if v != 2) + 1]) for r in rows)

    batches = ft.sft_batches(X, Y, 4, torch.Generator().manual_seed(0))
    epoch = [next(batches) for _ in range(16)]                             # 64 rows in batches of 4
    assert unpadded([r for x, _ in epoch for r in x.tolist()]) == unpadded(X.tolist()), "every row once per epoch"
    widths = [x.shape[1] for x, _ in epoch]
    assert sum(widths) < 0.8 * 16 * X.shape[1], "grouped batches are much narrower than the longest row"


def test_resize_embeddings_adds_mean_rows_and_keeps_the_old_logits():
    gpt = tiny_gpt(8, vocab_size=20)
    idx = torch.randint(0, 20, (2, 6))
    before = gpt(idx)[0]
    ft.resize_embeddings(gpt, 23)
    after = gpt(idx)[0]
    assert gpt.config.vocab_size == 23 and gpt.lm_head.weight is gpt.transformer.wte.weight
    torch.testing.assert_close(after[..., :20], before, atol=1e-6, rtol=0)
    torch.testing.assert_close(gpt.transformer.wte.weight[21], gpt.transformer.wte.weight[:20].mean(0))


def test_tokenizer_round_trips_and_names_unknown_characters():
    tok = ft.CharTokenizer(list("ab "), ["<|user|>", "<|end|>"])
    text = "<|user|>ab a<|end|>"
    assert tok.decode(tok.encode(text)) == text and len(tok.encode(text)) == 6
    with pytest.raises(ValueError, match="'z' is not in the vocabulary"):
        tok.encode("abz")


# ---- classification --------------------------------------------------------------------------------------------


def test_classifier_last_token_ignores_right_padding():
    gpt = tiny_gpt(9)
    clf = ft.GPTClassifier(gpt, 3).eval()
    a, b = [4, 5, 6, 7], [8, 9]
    batch = ft.pad_right([a, b])
    alone = torch.cat([clf(torch.tensor([a])), clf(torch.tensor([b]))])
    torch.testing.assert_close(clf(batch), alone, atol=1e-6, rtol=0)
    clf.pool = "mean"
    torch.testing.assert_close(clf(batch)[1], clf(torch.tensor([b]))[0], atol=1e-6, rtol=0)


def test_macro_f1_and_confusion_equal_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    y, p = torch.randint(0, 5, (300,), generator=g), torch.randint(0, 5, (300,), generator=g)
    p[p == 4] = 3                                                          # a class never predicted
    assert abs(ft.macro_f1(y, p, 5) - metrics.f1_score(y, p, average="macro", zero_division=0)) < 1e-12
    assert ft.confusion_matrix(y, p, 5).tolist() == metrics.confusion_matrix(y, p, labels=range(5)).tolist()
    assert abs(ft.accuracy(y, p) - metrics.accuracy_score(y, p)) < 1e-12


def test_naive_bayes_equals_sklearn():
    pytest.importorskip("sklearn")
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB

    rng = random.Random(0)
    texts = ["".join(rng.choice("春風花月山水") for _ in range(rng.randint(3, 12))) for _ in range(60)]
    labels = [int(t.count("春") > t.count("月")) + (len(t) > 8) for t in texts]
    test = ["".join(rng.choice("春風花月山水雨") for _ in range(8)) for _ in range(20)]
    ours = ft.NgramNaiveBayes(orders=(1, 2), alpha=0.5).fit(texts, labels)
    vec = CountVectorizer(analyzer="char", ngram_range=(1, 2), lowercase=False)
    theirs = MultinomialNB(alpha=0.5).fit(vec.fit_transform(texts), labels)
    scores = theirs.predict_joint_log_proba(vec.transform(test))
    assert (ours.log_scores(test) - torch.tensor(scores)).abs().max() < 1e-9
    assert ours.predict(test).tolist() == theirs.predict(vec.transform(test)).tolist()


def test_bootstrap_interval_brackets_the_value_and_pairs_cancel():
    y = torch.arange(200) % 4
    p = y.clone()
    p[::5] = (p[::5] + 1) % 4                                              # 80% right
    value, low, high = ft.bootstrap_metric(ft.accuracy, y, p)
    assert abs(value - 0.8) < 1e-12 and low < 0.8 < high and high - low < 0.15
    diff, dlow, dhigh = ft.bootstrap_metric(ft.accuracy, y, p, baseline=p)
    assert diff == dlow == dhigh == 0.0


def test_stratified_subset_keeps_every_class():
    labels = [0] * 50 + [1] * 10 + [2] * 3
    rows = ft.stratified_subset(labels, 0.1, seed=1)
    assert sorted(labels[i] for i in rows) == [0] * 5 + [1] + [2]
    assert rows == ft.stratified_subset(labels, 0.1, seed=1)


def test_epoch_batches_visit_every_row_once_per_epoch():
    X = ft.pad_right([[1] * (i % 5 + 1) for i in range(10)])
    Y = torch.arange(10)
    batches = ft.epoch_batches(X, Y, 4, torch.Generator().manual_seed(0))
    seen = [next(batches) for _ in range(3)]
    assert sorted(torch.cat([y for _, y in seen]).tolist()) == list(range(10))
    for x, _ in seen:
        assert (x != ft.PAD).any(0).all(), "no column of padding only"


# ---- the instruction generators -------------------------------------------------------------------------------


def test_every_generated_answer_passes_its_checker_and_every_corruption_fails():
    data = instructions.make_splits({t: (150, 60) for t in instructions.TASKS}, seed=3)
    for split in ("train", "test"):
        for ex, chosen, rejected in instructions.preference_pairs(data[split], seed=1):
            assert instructions.check(ex, chosen), (split, ex)
            assert not instructions.check(ex, rejected), (split, ex, rejected)


def test_preference_pairs_take_the_models_own_wrong_answers():
    examples = instructions.make_splits({t: (20, 0) for t in instructions.TASKS}, seed=3)["train"]
    plain = instructions.preference_pairs(examples, seed=1)
    wrong = [rejected for _, _, rejected in plain]
    answers = [ex.answer if i % 3 == 0 else "" if i % 3 == 1 else wrong[i] + "!" for i, ex in enumerate(examples)]
    pairs = instructions.preference_pairs(examples, seed=1, answers=answers)
    for i, ((ex, chosen, rejected), (_, _, corrupted)) in enumerate(zip(pairs, plain)):
        assert chosen == ex.answer and not instructions.check(ex, rejected)
        # a right or empty answer keeps the task's corruption; a wrong one replaces it
        assert rejected == (corrupted if i % 3 < 2 else answers[i]), (i, ex, rejected)
    with pytest.raises(ValueError, match="one answer per example"):
        instructions.preference_pairs(examples, answers=answers[:-1])


def test_generators_repeat_with_the_seed_and_hold_out_their_payloads():
    a = instructions.make_splits({t: (100, 40) for t in instructions.TASKS}, seed=5)
    b = instructions.make_splits({t: (100, 40) for t in instructions.TASKS}, seed=5)
    assert a == b
    assert a != instructions.make_splits({t: (100, 40) for t in instructions.TASKS}, seed=6)
    for task in ("dates", "reverse", "add"):
        train = {ex.key for ex in instructions.make_examples(task, 2000, "train", seed=0)}
        test = {ex.key for ex in instructions.make_examples(task, 300, "test", seed=0)}
        assert not train & test, f"{task}: a held-out payload occurs in training"
    test_lines = {ex.key for ex in instructions.make_examples("continue", 200, "test")}
    assert not test_lines & set(instructions.shakespeare_lines()["train"])


# ---- bad input ---------------------------------------------------------------------------------------------------


def test_bad_input_is_a_clear_error():
    gpt = tiny_gpt(10)
    with pytest.raises(ValueError, match="class 'b' has no examples"):
        ft.label_ids(["a", "a", "c"], ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"\{answer\} exactly once"):
        ft.ChatTemplate("<|user|>{prompt}<|end|>", ("<|user|>", "<|end|>"))
    with pytest.raises(ValueError, match="end marker"):
        ft.ChatTemplate("<|user|>{prompt}<|assistant|>{answer}", ("<|user|>", "<|assistant|>"))
    with pytest.raises(ValueError, match="'attn.q_proj' names no Linear"):
        ft.inject_lora(gpt, rank=2, targets=["attn.c_attn", "attn.q_proj"])
    assert not any(isinstance(m, ft.LoRALinear) for m in gpt.modules()), "nothing changed on a bad target"
    for rank in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="rank must be an int >= 1"):
            ft.inject_lora(gpt, rank=rank)
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        ft.dpo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(2), beta=0)
    with pytest.raises(ValueError, match="same length"):
        ft.dpo_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="unknown task"):
        instructions.make_examples("translate", 3, "train")
    with pytest.raises(ValueError, match="n_classes must be an int >= 2"):
        ft.GPTClassifier(gpt, 1)
    with pytest.raises(ValueError, match="fraction must lie in"):
        ft.stratified_subset([0, 1], 0.0)
