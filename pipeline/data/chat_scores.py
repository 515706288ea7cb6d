"""Scores of a chat model on held-out conversations and preference pairs.

- ``reply_scores``: loss, perplexity and next-token accuracy on the reply tokens alone;
- ``generation_check``: greedy replies to held-out prompts: the share that end with the end-of-turn
  token within ``max_new_tokens`` (stop rate) and ROUGE-L against the reference reply;
- ``reply_log_probs`` and ``preference_scores``: each reply's summed log-probability, and from them
  DPO's implicit rewards against a reference (reward accuracy and margin) and how often the model
  alone prefers the chosen reply per token.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
from transformers import DataCollatorForSeq2Seq

from pipeline.data.conversations import end_of_turn_ids
from pipeline.data.language_modeling import lm_scores, token_scores
from pipeline.log import log


def reply_collator(tokenizer: Any) -> Any:
    """Batches of labelled conversations padded to their longest, -100 under the padding."""
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100, return_tensors="pt")


def reply_scores(model: Any, dataset: Any, collator: Any, batch_size: int = 8) -> dict[str, float]:
    """Held-out loss and perplexity on the reply tokens (the labelled ones), and next-token accuracy there."""
    return reply_view(lm_scores(model, dataset, collator, causal=True, batch_size=batch_size))


def reply_view(scores: dict[str, float]) -> dict[str, float]:
    """Loss, perplexity and accuracy of replies, in the order runs record them."""
    return {name: scores[name] for name in ("loss", "perplexity", "accuracy")}


def generation_check(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]],
                     max_new_tokens: int) -> dict[str, float]:
    """Greedy replies to held-out prompts (each conversation up to its last assistant turn): the share
    that end with the end-of-turn token within ``max_new_tokens`` (stop rate), and ROUGE-L F1 of
    the reply against the reference."""
    if not conversations:
        return {}
    stop_ids = end_of_turn_ids(tokenizer)
    stopped, rouge = 0, []
    scorer = rouge_scorer()
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    for messages in conversations:
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        prompt = tokenizer.apply_chat_template(messages[:last], add_generation_prompt=True, tokenize=False)
        encoded = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").to(device)
        with torch.inference_mode():
            out = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop_ids,
                                 pad_token_id=tokenizer.pad_token_id)
        reply = out[0, encoded["input_ids"].shape[1]:].tolist()
        stopped += any(token in stop_ids for token in reply)
        text = tokenizer.decode(reply, skip_special_tokens=True)
        if scorer is not None:
            rouge.append(scorer.score(messages[last]["content"], text)["rougeL"].fmeasure)
    model.train(was_training)
    scores = {"stop_rate": stopped / len(conversations)}
    if rouge:
        scores["rouge_l"] = sum(rouge) / len(rouge)
    return scores


def rouge_scorer() -> Any:
    try:
        from rouge_score import rouge_scorer as rouge
    except ImportError:
        log.warning("ROUGE-L needs rouge-score: pip install 'finetune-pipeline[chat]'; reporting the stop rate alone")
        return None
    return rouge.RougeScorer(["rougeL"], use_stemmer=False)


class ReplyLogProbs(NamedTuple):
    """Per labelled conversation: the reply's summed log-probability, its token count, and how many of
    its tokens are the model's top guess."""
    sums: torch.Tensor
    counts: torch.Tensor
    correct: torch.Tensor


def reply_log_probs(model: Any, dataset: Any, collator: Any, batch_size: int = 8) -> ReplyLogProbs:
    """For each labelled conversation of ``dataset`` (the reply tokens labelled), in the dataset's
    order: its reply's summed log-probability, token count and correctly guessed tokens."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums, counts, correct = [], [], []
    for start in range(0, len(dataset), batch_size):
        batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        labels = batch.pop("labels").to(device)
        with torch.inference_mode():
            logits = model(input_ids=batch["input_ids"].to(device),
                           attention_mask=batch["attention_mask"].to(device)).logits.float()
        logits, labels = logits[:, :-1], labels[:, 1:]
        mask = labels != -100
        picked = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        sums.append((picked * mask).sum(-1).cpu())
        counts.append(mask.sum(-1).cpu())
        correct.append(((logits.argmax(-1) == labels) & mask).sum(-1).cpu())
    model.train(was_training)
    return ReplyLogProbs(torch.cat(sums), torch.cat(counts), torch.cat(correct))


def reply_token_scores(log_probs: ReplyLogProbs, rows: slice) -> dict[str, float]:
    """``reply_scores`` of the conversations at ``rows``, from their ``reply_log_probs``: the same
    numbers without a second pass over the model."""
    return reply_view(token_scores(-float(log_probs.sums[rows].sum()), int(log_probs.correct[rows].sum()),
                                   int(log_probs.counts[rows].sum())))


def preference_scores(policy: Sequence[torch.Tensor], reference: Sequence[torch.Tensor], beta: float) -> dict[str, float]:
    """From ``reply_log_probs`` of the chosen replies followed by the rejected ones (``policy`` and
    ``reference`` alike): DPO's implicit reward of a reply, ``beta * (log pi - log pi_ref)``;
    ``reward_accuracy``, the share of pairs whose chosen reply earns the higher reward (a tie, as before
    any training, counts as not higher, TRL's convention); ``reward_margin``, the mean difference; and
    ``chosen_preferred``, the share of pairs whose chosen reply the model alone gives the higher
    log-probability per token (meaningful before training too)."""
    logp, count, ref_logp = policy[0], policy[1], reference[0]
    half = len(logp) // 2
    rewards = beta * (logp - ref_logp)
    margin = rewards[:half] - rewards[half:]
    per_token = logp / count.clamp(min=1)
    return {"loss": -torch.nn.functional.logsigmoid(margin).mean().item(),
            "reward_accuracy": (margin > 0).float().mean().item(), "reward_margin": margin.mean().item(),
            "chosen_preferred": (per_token[:half] > per_token[half:]).float().mean().item()}
