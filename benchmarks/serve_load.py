"""`r1 serve` under load: N concurrent streaming chat requests on loopback, with the
continuous-batching engine and with batching off (one request at a time), in one run.

    python benchmarks/serve_load.py [--model smollm2-135m] [--requests 64] [--max-tokens 128]
    python benchmarks/serve_load.py --model tiny-answers   # the test model: answers checked exactly

Every request streams through the official `openai` client (AsyncOpenAI). Each side must
bring back all N streams, each with one id, a finish reason and text; with `tiny-answers`
each stream must also carry exactly its own question's reasoning and answer. Reported:
completion tokens/s (server-side usage / wall time), time to first token p50/p95, and
the ratio batched / unbatched. EOS is ignored (vLLM's `ignore_eos`) so that both sides
generate the same number of tokens. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

QUESTIONS_REAL = ["What is {a} + {b}?", "Explain why {a} times {b} equals {c}.", "Write a short poem about the number {a}.",
                  "Is {c} a prime number? Think it through.", "Give {a} tips for learning to code."]


async def _run(url: str, prompts: list[str], model: str, max_tokens: int, ignore_eos: bool) -> tuple[list[dict], float]:
    import openai

    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="bench", max_retries=0, timeout=3600)

    async def one(prompt: str) -> dict:
        t0 = time.perf_counter()
        out = {"reasoning": "", "content": "", "finish": None, "ids": set(), "tokens": 0, "ttft": None}
        stream = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0.6,
            top_p=0.95, stream=True, stream_options={"include_usage": True},
            extra_body={"ignore_eos": ignore_eos})
        async for chunk in stream:
            out["ids"].add(chunk.id)
            if chunk.usage:
                out["tokens"] = chunk.usage.completion_tokens
            for ch in chunk.choices:
                piece = (getattr(ch.delta, "reasoning_content", None) or "") + (ch.delta.content or "")
                if piece and out["ttft"] is None:
                    out["ttft"] = time.perf_counter() - t0
                out["reasoning"] += getattr(ch.delta, "reasoning_content", None) or ""
                out["content"] += ch.delta.content or ""
                out["finish"] = ch.finish_reason or out["finish"]
        return out

    async with client:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(p) for p in prompts))
        return results, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m", help="a model spec, or tiny-answers (the test model)")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--max-batch", type=int, default=64, help="the batched side's --max-batch")
    args = ap.parse_args()

    from serve_support import QUESTIONS, content_of, make_server, question, reasoning_of, train_answering_tiny

    checked = args.model == "tiny-answers"
    if checked:
        spec = str(train_answering_tiny(Path(tempfile.mkdtemp()) / "tiny-answers"))
        asked = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.requests)]
        prompts = [question(a, b) for a, b in asked]
    else:
        spec = args.model
        prompts = [QUESTIONS_REAL[i % len(QUESTIONS_REAL)].format(a=2 + i % 7, b=3 + i % 5, c=(2 + i % 7) * (3 + i % 5))
                   for i in range(args.requests)]
    report = {"model": args.model, "requests": args.requests, "max_tokens": args.max_tokens}
    for label, max_batch in (("batched", args.max_batch), ("unbatched", 1)):
        with make_server(spec, max_batch=max_batch, max_queue=args.requests, max_tokens_cap=args.max_tokens,
                         request_timeout=3600, model_name="bench") as srv:
            results, wall = asyncio.run(_run(srv.url, prompts, "bench", args.max_tokens, ignore_eos=not checked))
            stats = srv.engine.stats()
        complete = sum(1 for r in results if r["finish"] and len(r["ids"]) == 1 and r["tokens"] > 0
                       and (r["reasoning"] or r["content"]))
        ids = {next(iter(r["ids"])) for r in results if r["ids"]}
        tokens = sum(r["tokens"] for r in results)
        ttft = sorted(r["ttft"] for r in results if r["ttft"] is not None)
        side = {"max_batch": max_batch, "complete": complete, "distinct_ids": len(ids), "tokens": tokens,
                "wall_s": round(wall, 2), "tokens_per_s": round(tokens / wall, 1),
                "ttft_p50_s": round(statistics.median(ttft), 3) if ttft else None,
                "ttft_p95_s": round(ttft[int(0.95 * (len(ttft) - 1))], 3) if ttft else None,
                "engine_steps": stats["steps"], "max_rows": stats["max_rows"]}
        if checked:
            side["correct"] = sum(1 for (a, b), r in zip(asked, results)
                                  if r["reasoning"].strip() == reasoning_of(a, b) and r["content"].strip() == content_of(a, b))
        report[label] = side
        print(f"{label:>9} (max_batch {max_batch}): {complete}/{args.requests} complete, {tokens} tokens in "
              f"{wall:.1f} s = {side['tokens_per_s']} tok/s, TTFT p50 {side['ttft_p50_s']} s p95 {side['ttft_p95_s']} s"
              + (f", {side['correct']}/{args.requests} correct answers" if checked else ""), flush=True)
    report["ratio_batched_over_unbatched"] = round(report["batched"]["tokens_per_s"] / report["unbatched"]["tokens_per_s"], 2)
    print(f"batched / unbatched throughput: {report['ratio_batched_over_unbatched']}x")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
