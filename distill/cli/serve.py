"""`distillery serve --model DIR`: an OpenAI-compatible HTTP server over a local checkpoint.

    distillery serve --model runs/tiny --port 8000 [--backend transformers] [--split-reasoning]
                     [--max-batch 16] [--max-queue 64] [--fault 429:0.2 --fault drop:0.1]
"""

from __future__ import annotations


def register(subparsers) -> None:
    help = "serve a local model over an OpenAI-compatible HTTP API (batched, streaming)"
    p = subparsers.add_parser("serve", help=help, description=help)
    p.add_argument("--model", required=True, metavar="DIR", help="checkpoint directory")
    p.add_argument("--backend", default="engine", choices=["engine", "transformers"])
    p.add_argument("--name", help="served model name (default: the directory's name)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=16, help="sequences decoded together")
    p.add_argument("--max-queue", type=int, default=64,
                   help="requests waiting before the server answers 429")
    p.add_argument("--max-tokens", type=int, default=1024,
                   help="default max_tokens of a request that gives none")
    p.add_argument("--no-thinking", dest="enable_thinking", action="store_false",
                   help="render chat prompts with enable_thinking=false")
    p.add_argument("--force-think", action="store_true",
                   help="append <think>\\n to chat prompts whose template does not open it")
    p.add_argument("--split-reasoning", action="store_true",
                   help="return the <think> block as reasoning_content (per request: "
                        "split_reasoning)")
    p.add_argument("--mtp", dest="use_mtp", action="store_true", help="MTP speculation (engine)")
    p.add_argument("--dtype")
    p.add_argument("--device")
    p.add_argument("--fault", dest="faults", action="append", default=[], metavar="KIND[:RATE]",
                   help="inject 429, 500, slow, drop or garbage answers (repeatable)")
    p.add_argument("--fault-seed", type=int, default=0)
    p.add_argument("--fault-delay", dest="fault_delay_s", type=float, default=5.0,
                   help="seconds a 'slow' fault waits")
    p.add_argument("--retry-after", dest="retry_after_s", type=float, default=1.0,
                   help="Retry-After seconds sent with 429s")
    p.add_argument("--api-key-env", metavar="NAME",
                   help="require Authorization: Bearer $NAME")
    p.add_argument("--shutdown-timeout", dest="shutdown_timeout_s", type=float, default=30.0)
    p.set_defaults(func=_run)


def _run(args) -> int:
    from distill.serve import ServeConfig, serve

    values = {k: v for k, v in vars(args).items() if k != "func"}
    serve(ServeConfig(**values))
    return 0
