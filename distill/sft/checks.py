"""Fail-fast checks before any training step (distillation-methods.md §6, items 6 and 7): the
mistakes that train a model that never stops, or learns the prompt, while the loss looks fine.

* The tokenizer needs a pad token distinct from EOS: with pad == eos, collators and label masks
  that drop padding drop the EOS too, so the model never learns to stop.
* The chat template needs `{% generation %}` markers (TRL's assistant_only_loss reads them).
* A probe conversation must put the whole assistant turn, reasoning, answer and EOS, inside the
  assistant mask, and nothing of the prompt; templates that strip `<think>` content from the
  assistant turn, or pre-insert `<think>` before it, fail here.
"""

from __future__ import annotations

import re

_PROBE_Q, _PROBE_R, _PROBE_A = "probe question 17", "probe reasoning 29", "probe answer 41"
_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")


def check_tokenizer(tok, where: str) -> None:
    if tok.eos_token_id is None:
        raise ValueError(f"{where}: the tokenizer has no EOS token")
    if tok.pad_token_id is None:
        raise ValueError(f"{where}: the tokenizer has no pad token; add one distinct from EOS "
                         f"({tok.eos_token!r}), e.g. tokenizer.add_special_tokens({{'pad_token': '<|pad|>'}})")
    if tok.pad_token_id == tok.eos_token_id:
        raise ValueError(f"{where}: pad token == EOS token ({tok.eos_token!r}); the EOS would be "
                         "masked with the padding and the model would never learn to stop. "
                         "Give the tokenizer its own pad token")
    template = tok.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    if not template:
        raise ValueError(f"{where}: the tokenizer has no chat template")
    if not _GENERATION.search(template):
        raise ValueError(f"{where}: the chat template has no {{% generation %}} ... "
                         "{% endgeneration %} markers around the assistant turn, so the loss "
                         "cannot be put on assistant tokens only. Wrap the assistant content and "
                         "its EOS in them (pretrain/tokenizer.py CHAT_TEMPLATE is an example)")
    _check_probe(tok, where)


def _check_probe(tok, where: str) -> None:
    messages = [{"role": "user", "content": _PROBE_Q},
                {"role": "assistant", "content": f"<think>\n{_PROBE_R}\n</think>\n\n{_PROBE_A}"}]
    enc = tok.apply_chat_template(messages, tokenize=True, return_dict=True,
                                  return_assistant_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    trained = [i for i, m in zip(ids, mask) if m]
    trained_text = tok.decode(trained)
    full_text = tok.decode(ids)
    problems = []
    if not trained or trained[-1] != tok.eos_token_id:
        problems.append("the assistant turn's EOS is not trained (the model would not stop)")
    if _PROBE_R not in trained_text:
        problems.append("the reasoning inside <think> is not in the trained tokens (the "
                        "template strips or hides it)")
    if _PROBE_A not in trained_text:
        problems.append("the answer is not in the trained tokens")
    if _PROBE_Q in trained_text:
        problems.append("prompt tokens are inside the assistant mask")
    if full_text.count("<think>") != 1:
        problems.append(f"'<think>' appears {full_text.count('<think>')} times in the rendered "
                        "conversation (the template pre-inserts or drops it)")
    if problems:
        raise ValueError(f"{where}: chat template check failed: " + "; ".join(problems))


def check_model_tokens(model_config, tok, where: str) -> None:
    """The model must cover the tokenizer's ids and stop on the tokenizer's EOS."""
    vocab = model_config.get_text_config().vocab_size
    if vocab < len(tok):
        raise ValueError(f"{where}: the model's vocab_size {vocab} is smaller than the "
                         f"tokenizer's {len(tok)} tokens")
    eos = model_config.get_text_config().eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    if eos_ids and tok.eos_token_id not in eos_ids:
        raise ValueError(f"{where}: the model's eos_token_id {eos} differs from the tokenizer's "
                         f"EOS {tok.eos_token!r} (id {tok.eos_token_id}); generation would not "
                         "stop where training taught it to")
