"""Style and length control: instances (distill/sft/data.py) -> training conversations.

Style (StyleConfig.format):
* r1: the assistant turn is `<think>\\nreasoning\\n</think>\\n\\nanswer` (DeepSeek-R1's format);
* short: the answer alone, reasoning removed;
* v3_mix: both, as two samples per instance (DeepSeek-V3 sec. 5.1): <problem, short answer> and
  <reflection system prompt, problem, R1 response>.
Instances without reasoning train as their plain answer in every style.

Length (LengthConfig), counted in tokens of the rendered assistant turn plus its EOS:
* over the budget, `drop` removes the sample; `cap` cuts the reasoning (kept from its start) so
  the turn fits, keeping `</think>` and the answer; if the answer alone does not fit, it drops;
* think_for_n appends "Think for N tokens." to the last user turn, N = the reasoning's real token
  count after any cut (L1, arXiv 2503.04697), so a budget can be asked for at inference.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from distill.sft.config import LengthConfig, StyleConfig
from distill.sft.data import Instance


def render(reasoning: str | None, answer: str) -> str:
    """The assistant content: R1 format when there is reasoning, else the answer."""
    if reasoning is None:
        return answer
    return f"<think>\n{reasoning}\n</think>\n\n{answer}"


@dataclass
class Sample:
    system: str | None
    turns: list[dict]
    reasoning: str | None
    answer: str

    def messages(self) -> list[dict]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns + [{"role": "assistant", "content": render(self.reasoning, self.answer)}]


def styled(inst: Instance, style: StyleConfig) -> list[Sample]:
    """The samples one instance gives under `style` (one, or two for v3_mix)."""
    system = inst.system or style.system_prompt
    turns = [dict(t) for t in inst.turns]
    if inst.reasoning is None or style.format == "r1":
        return [Sample(system, turns, inst.reasoning, inst.answer)]
    short = Sample(system, turns, None, inst.answer)
    if style.format == "short":
        return [short]
    reflect = style.reflection_system_prompt
    r1_system = f"{system}\n\n{reflect}" if system else reflect
    return [short, Sample(r1_system, [dict(t) for t in inst.turns], inst.reasoning, inst.answer)]


class LengthControl:
    """Applies LengthConfig with the tokenizer's counts; `stats` counts what happened."""

    def __init__(self, cfg: LengthConfig, tokenizer):
        self.cfg, self.tok = cfg, tokenizer
        self.stats: Counter = Counter()

    def count(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def turn_tokens(self, sample: Sample) -> int:
        return self.count(render(sample.reasoning, sample.answer)) + 1  # + EOS

    def apply(self, sample: Sample) -> Sample | None:
        budget = self.cfg.max_tokens
        if budget is not None and self.turn_tokens(sample) > budget:
            if self.cfg.over_budget == "drop" or sample.reasoning is None:
                self.stats["dropped_over_budget"] += 1
                return None
            sample = self._cap(sample, budget)
            if sample is None:
                self.stats["dropped_over_budget"] += 1
                return None
            self.stats["capped"] += 1
        if self.cfg.think_for_n and sample.reasoning is not None:
            n = self.count(sample.reasoning)
            last = dict(sample.turns[-1])
            last["content"] = f"{last['content']}\n\n{self.cfg.think_for_n_template.format(n=n)}"
            sample.turns = sample.turns[:-1] + [last]
        return sample

    def _cap(self, sample: Sample, budget: int) -> Sample | None:
        """Keep the longest reasoning prefix (in tokens) whose turn fits the budget."""
        ids = self.tok(sample.reasoning, add_special_tokens=False)["input_ids"]
        room = budget - self.turn_tokens(Sample(None, [], "", sample.answer))
        while room > 0:
            cut = self.tok.decode(ids[:room]).rstrip()
            capped = Sample(sample.system, sample.turns, cut, sample.answer)
            if self.turn_tokens(capped) <= budget:
                return capped
            room -= 1  # re-tokenizing the cut text can merge differently; shrink and retry
        return None


def build_conversations(instances: list[Instance], style: StyleConfig, length: LengthConfig,
                        tokenizer) -> tuple[list[dict], dict]:
    """Rows {"messages": [...]} for TRL, and counts of what style/length control did."""
    control = LengthControl(length, tokenizer)
    rows = []
    for inst in instances:
        for sample in styled(inst, style):
            kept = control.apply(sample)
            if kept is not None:
                rows.append({"messages": kept.messages()})
    stats = {"instances": len(instances), "samples": len(rows), **control.stats}
    if not rows:
        raise ValueError(f"sft: no sample is left after length control ({stats}); raise "
                         "sft.length.max_tokens or use over_budget: cap")
    return rows, stats
