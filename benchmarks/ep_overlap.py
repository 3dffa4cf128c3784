"""Expert-parallel all-to-all overlap: step time with overlap on vs off, and the share of all-to-all
time hidden behind compute (model/expert_parallel.py).

    python benchmarks/ep_overlap.py --nproc 2                  # CPU, gloo
    python benchmarks/ep_overlap.py --nproc 8 --device cuda    # one node of GPUs, NCCL

Each process holds E / nproc experts of a MoE-heavy model and runs forward + backward on its own
batch; "off" (one blocking all-to-all each way) and "on" (two chunks, async, explicit waits) are
timed round-robin in one run, the step time being the slowest rank's.

Hidden share, from host timestamps of every all-to-all (launch, wait begin/end, completion from
the collective's future): 1 - (time blocked in wait) / (launch-to-completion time), summed over
the step's collectives, forward and backward. `exposed_on_vs_blocking_off` divides the time
blocked in all-to-alls with overlap on by the time the blocking all-to-alls take with it off
(1 - that = the share of the blocking cost that overlap took off the critical path). The
split-size exchange (one small blocking all-to-all per layer) is not traced. With gloo the
collective runs on its own thread, so the host timestamps are the real timeline; with NCCL,
wait() does not block the host, so on CUDA only step times, tokens/s and MFU are meaningful.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def model_config(args):
    from model import ModelConfig
    return ModelConfig(
        vocab_size=1024, hidden_size=args.hidden, intermediate_size=2 * args.hidden,
        moe_intermediate_size=args.expert_width, num_hidden_layers=args.layers,
        first_k_dense_replace=1, num_attention_heads=4, q_lora_rank=None, kv_lora_rank=64,
        qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32, n_routed_experts=args.experts,
        num_experts_per_tok=args.top_k, n_group=4, topk_group=2, n_shared_experts=1,
        max_position_embeddings=max(2048, args.seq_len), num_nextn_predict_layers=0,
        fp8=False)


def _worker(rank, args, port, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=args.nproc)
    from model import Transformer
    from model.accounting import account
    from model.expert_parallel import CommTrace, shard_experts
    from pretrain.metrics import device_peak_flops
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    torch.manual_seed(0)
    config = model_config(args)
    model = Transformer(config).to(device).train()
    dispatcher = shard_experts(model, dist.group.WORLD, fp8_dispatch=args.fp8_dispatch)
    gen = torch.Generator().manual_seed(rank)
    shape = (args.batch_size, args.seq_len)
    ids = torch.randint(0, config.vocab_size, shape, generator=gen).to(device)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cuda
                else torch.autocast("cpu", enabled=False))

    def step(overlap: bool):
        dispatcher.overlap = overlap
        dispatcher.trace = CommTrace()
        dist.barrier()
        if cuda:
            torch.cuda.synchronize()
        began = time.perf_counter()
        with autocast:
            loss = model(ids, labels=ids).loss
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
        elapsed = torch.tensor(time.perf_counter() - began, device=device)
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        model.zero_grad(set_to_none=True)
        return float(elapsed), dispatcher.trace.hidden_share()

    for _ in range(args.warmup):
        step(False), step(True)
    times = {"off": [], "on": []}
    shares = {"off": [], "on": []}
    for _ in range(args.steps):
        for name in ("off", "on"):
            seconds, trace = step(name == "on")
            times[name].append(seconds)
            shares[name].append(trace)
    if rank == 0:
        tokens = args.nproc * args.batch_size * args.seq_len
        peak = device_peak_flops(device)
        flops = account(config, args.seq_len).flops_per_token
        result = {}
        for name in ("off", "on"):
            t = statistics.median(times[name])
            comm = sum(s["comm_s"] for s in shares[name])
            exposed = sum(s["exposed_s"] for s in shares[name])
            result[name] = {"step_s": t, "tokens_per_s": tokens / t,
                            "mfu": tokens / t * flops / (peak * args.nproc) if peak else None,
                            "comm_s_per_step": comm / args.steps,
                            "exposed_comm_s_per_step": exposed / args.steps,
                            "hidden_share": (comm - exposed) / comm if comm > 0 else 0.0,
                            "collectives_per_step": shares[name][0]["collectives"]}
        queue.put(result)
    dist.destroy_process_group()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (CPU)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--expert-width", type=int, default=256)
    parser.add_argument("--fp8-dispatch", action="store_true")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_worker, args=(args, port, queue), nprocs=args.nproc, start_method="spawn")
    result = queue.get()
    off, on = result["off"], result["on"]
    summary = {"nproc": args.nproc, "device": args.device, "fp8_dispatch": args.fp8_dispatch,
               "tokens_per_step": args.nproc * args.batch_size * args.seq_len,
               "step_s_off": round(off["step_s"], 4), "step_s_on": round(on["step_s"], 4),
               "speedup_on_vs_off": round(off["step_s"] / on["step_s"], 3),
               "hidden_share_on": round(on["hidden_share"], 3),
               "hidden_share_off": round(off["hidden_share"], 3),
               "exposed_on_vs_blocking_off": round(
                   on["exposed_comm_s_per_step"] / off["exposed_comm_s_per_step"], 3)
               if off["exposed_comm_s_per_step"] else None,
               "comm_s_per_step_on": round(on["comm_s_per_step"], 4),
               "exposed_comm_s_per_step_on": round(on["exposed_comm_s_per_step"], 4),
               "exposed_comm_s_per_step_off": round(off["exposed_comm_s_per_step"], 4),
               "tokens_per_s_on": round(on["tokens_per_s"], 1),
               "tokens_per_s_off": round(off["tokens_per_s"], 1),
               "mfu_on": on["mfu"], "mfu_off": off["mfu"]}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
