"""`distillery generate --config R [--set k=v ...]`: sample the teacher into out_dir/samples/.

Exit codes: 0 when every sample is written, 1 when some failed (they are listed in
failures.jsonl and retried by running the same command again), 2 for bad input.
"""

from __future__ import annotations

from distill.cli import add_config_arguments


def register(subparsers) -> None:
    help = "generate teacher long-CoT samples (resumable; re-run to continue)"
    parser = subparsers.add_parser("generate", help=help, description=help)
    add_config_arguments(parser, required=True)
    parser.set_defaults(func=_run)


def _run(args) -> int:
    import json

    from distill.generate import GenerateConfig, run_generate
    from distill.generate.run import SUMMARY
    from recipes.config import load_config

    cfg = load_config(GenerateConfig, args.config, args.overrides, section="generate")
    out = run_generate(cfg)
    summary = json.loads((out / SUMMARY).read_text())
    print(f"wrote {out / 'samples'}, {out / SUMMARY}")
    return 1 if summary["run"]["failed_samples"] else 0
