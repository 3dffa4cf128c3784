"""How a problem becomes the teacher's prompt: the R1 form, DeepSeek-V3's two-sample scheme, L1's
length-conditioned prompts, or a template file. Every row records which one made its prompt.

    template = make_template(cfg.prompt)
    messages, info = template.build(problem, sample_index, seed)

r1  DeepSeek-R1's usage notes (docs/distillation-methods.md §3.8): no system prompt, the
    instruction "Please reason step by step, and put your final answer within \\boxed{}." after
    the problem, and the assistant turn forced to open with `<think>\\n` (the generator's
    `force_think`). Multiple-choice and code problems get the matching instruction instead.
v3  DeepSeek-V3 §5.1 (§3.7 of the notes): two samples per instance, <problem, response> and
    <system prompt, problem, response> where the system prompt asks for reflection and
    verification. Even sample indices are plain, odd ones carry the system prompt, so n=2 gives
    one pair per problem. (The report does not publish its system prompt; ours is `REFLECT`.)
l1  L1 / LCPO (Aggarwal & Welleck 2025, §3.4): the instruction ends with "Think for N tokens."
    (length_mode exact) or "Think for maximum N tokens." (max); N is drawn per sample, seeded,
    from length_budgets (a list) or uniformly from length_range [lo, hi] (L1 trains on
    U[100, 4000]).
file a YAML file with `messages: [{role, content}, ...]` (and optional `name`), or any other
    text file used as the user message; `str.format` fields: {problem} (alias {question}; with
    lettered choices for multiple choice), {instruction} (the kind's instruction), {id}.

info: {"name", "variant", "hash"} (+ "budget" for l1): `hash` covers the template's definition,
so rows made by an edited template file are told apart.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from evals.types import Problem

LETTERS = "ABCDEFGHIJ"
INSTRUCTIONS = {
    "math": "Please reason step by step, and put your final answer within \\boxed{}.",
    "choice": "Please reason step by step, and finish with a line of the form 'Answer: X', "
              "where X is one of the letters above.",
    "code": "Please reason step by step, then write the complete Python program in one "
            "```python code block at the end.",
}
REFLECT = ("You are a careful problem solver. Think the problem through step by step; after each "
           "key step, reflect on whether it is right, and verify the final answer (substitute it "
           "back, check units, cases and edge cases) before you state it.")
FIELDS = {"problem", "question", "instruction", "id"}


@dataclass
class PromptConfig:
    """The `generate.prompt` section.

    template: r1 | v3 | l1 | file (see distill/generate/templates.py).
    file: the template file, for template: file.
    system_prompt: a system message for r1 / l1 (DeepSeek advises none) and v3's plain sample.
    reflect_prompt: v3's system prompt for the odd samples (None: the built-in REFLECT).
    length_mode: l1: "exact" ("Think for N tokens.") or "max" ("Think for maximum N tokens.").
    length_budgets / length_range: l1: the N to draw from, a list or [lo, hi].
    force_think: open the assistant turn with `<think>\\n` where the chat template does not.
    """

    template: Literal["r1", "v3", "l1", "file"] = "r1"
    file: str | None = None
    system_prompt: str | None = None
    reflect_prompt: str | None = None
    length_mode: Literal["exact", "max"] = "exact"
    length_budgets: list[int] = field(default_factory=list)
    length_range: list[int] = field(default_factory=list)
    force_think: bool = True

    def __post_init__(self):
        if self.template == "file" and not self.file:
            raise ValueError("prompt.template: file needs prompt.file (a YAML or text template)")
        if self.template != "file" and self.file:
            raise ValueError(f"prompt.file is set but prompt.template is {self.template!r}; "
                             "set template: file")
        if self.template == "l1":
            if bool(self.length_budgets) == bool(self.length_range):
                raise ValueError("prompt: template l1 needs exactly one of length_budgets (a list)"
                                 " or length_range ([lo, hi])")
            if self.length_range and (len(self.length_range) != 2 or
                                      not 1 <= self.length_range[0] <= self.length_range[1]):
                raise ValueError(f"prompt.length_range must be [lo, hi] with 1 <= lo <= hi, got "
                                 f"{self.length_range}")
            if any(b < 1 for b in self.length_budgets):
                raise ValueError(f"prompt.length_budgets must be >= 1, got {self.length_budgets}")


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def user_text(problem: Problem) -> tuple[str, str]:
    """(problem text with lettered choices when it has them, the kind's instruction)."""
    text = problem.question
    if problem.choices:
        text += "\n\n" + "\n".join(f"{LETTERS[i]}) {c}" for i, c in enumerate(problem.choices))
    return text, INSTRUCTIONS.get(problem.kind, INSTRUCTIONS["math"])


class Template:
    """Builds (messages, info) for one (problem, sample index, seed)."""

    def __init__(self, cfg: PromptConfig):
        self.cfg = cfg
        self.reflect = cfg.reflect_prompt or REFLECT
        self.messages_spec: list[dict] | None = None
        self.name = cfg.template
        definition: dict = {"template": cfg.template, "system": cfg.system_prompt}
        if cfg.template == "v3":
            definition["reflect"] = self.reflect
        if cfg.template == "l1":
            definition.update(mode=cfg.length_mode, budgets=cfg.length_budgets,
                              range=cfg.length_range)
        if cfg.template == "file":
            self.messages_spec, self.name = _read_template_file(Path(cfg.file))
            definition["messages"] = self.messages_spec
        self.hash = _hash(definition)

    def check(self, problem: Problem) -> None:
        """Build once so a broken template fails before any generation."""
        self.build(problem, 0, 0)

    def build(self, problem: Problem, sample_index: int, seed: int) -> tuple[list[dict], dict]:
        text, instruction = user_text(problem)
        info = {"name": self.name, "variant": "plain", "hash": self.hash}
        system = self.cfg.system_prompt
        if self.cfg.template == "file":
            values = {"problem": text, "question": text, "instruction": instruction,
                      "id": problem.id}
            messages = [{"role": m["role"], "content": m["content"].format(**values)}
                        for m in self.messages_spec]
            return messages, info
        user = f"{text}\n{instruction}"
        if self.cfg.template == "v3" and sample_index % 2 == 1:
            system, info["variant"] = self.reflect, "reflect"
        if self.cfg.template == "l1":
            budget = self._budget(problem.id, sample_index, seed)
            phrase = "Think for maximum {} tokens." if self.cfg.length_mode == "max" \
                else "Think for {} tokens."
            user += " " + phrase.format(budget)
            info.update(variant=self.cfg.length_mode, budget=budget)
        head = [{"role": "system", "content": system}] if system else []
        return head + [{"role": "user", "content": user}], info

    def _budget(self, problem_id: str, sample_index: int, seed: int) -> int:
        rng = random.Random(f"l1|{seed}|{problem_id}|{sample_index}")
        if self.cfg.length_budgets:
            return rng.choice(self.cfg.length_budgets)
        lo, hi = self.cfg.length_range
        return rng.randint(lo, hi)


def _read_template_file(path: Path) -> tuple[list[dict], str]:
    """(messages with format fields, template name) from a YAML messages file or a text file."""
    if not path.is_file():
        raise FileNotFoundError(f"prompt.file: {path}: no such file")
    text = path.read_text(encoding="utf-8")
    name = f"file:{path.name}"
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: invalid YAML: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            raise ValueError(f"{path}: expected a mapping with `messages: [{{role, content}}]`")
        messages = data["messages"]
        name = str(data.get("name") or name)
    else:
        messages = [{"role": "user", "content": text}]
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) != {"role", "content"} or \
                m["role"] not in ("system", "user", "assistant"):
            raise ValueError(f"{path}: messages[{i}] must be {{role: system|user|assistant, "
                             f"content: text}}, got {m!r:.120}")
        _check_fields(str(m["content"]), f"{path}: messages[{i}]")
    if not any("{problem}" in m["content"] or "{question}" in m["content"] for m in messages):
        raise ValueError(f"{path}: no message uses {{problem}} (or {{question}}); the problem "
                         "would never reach the teacher")
    if messages[-1]["role"] != "user":
        raise ValueError(f"{path}: the last message must be the user's")
    return [{"role": m["role"], "content": str(m["content"])} for m in messages], name


def _check_fields(content: str, where: str) -> None:
    import string

    try:
        names = {f for _, f, _, _ in string.Formatter().parse(content) if f is not None}
    except ValueError as e:
        raise ValueError(f"{where}: bad format string ({e}); write literal braces as {{{{ }}}}") \
            from None
    unknown = names - FIELDS
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; use {sorted(FIELDS)}")
