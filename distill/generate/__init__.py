"""Teacher long-CoT generation (`distillery generate`).

    from distill.generate import GenerateConfig, run_generate, load_problems
    out_dir = run_generate(cfg)                     # out_dir/samples/ holds the sample rows
    problems = load_problems(spec, field_map)       # also for the filter and GRPO stages

Files: config.py (GenerateConfig), problems.py (sources, schemas, field maps, ids),
templates.py (r1, v3, l1, file prompts), run.py (the resumable loop), summary.py (summary.json,
exports).
"""

from distill.generate.config import GenerateConfig
from distill.generate.problems import load_problems
from distill.generate.run import row_key, run_generate
from distill.generate.templates import PromptConfig

__all__ = ["GenerateConfig", "PromptConfig", "load_problems", "row_key", "run_generate"]
