#!/usr/bin/env python3
"""Load benchmark for `squish serve`, optionally side by side with llama.cpp's `llama-server` in the same sitting.

For each server (alternating between them, `--rounds` times) it starts the server on a free loopback port, sends
one warm-up request, then measures
  * a single stream: one streaming chat request of `--tokens` new tokens;
  * the load: `--concurrency` streaming chat requests at once, `--tokens` new tokens each (ignore_eos, so every
    request generates exactly that many), different prompts, seeded sampling (temperature 0.7, top-k 40, top-p
    0.95, min-p 0.05);
and reports aggregate generated tokens/s (all tokens / wall time from the first request to the last token), p50
and p99 time to first token, the outcome of every request (completed, refused with 429/503 before streaming, or
cut mid-stream) and the server's peak RSS (VmHWM). Bounded: every phase has a deadline, and the servers are
stopped at the end. Python's standard library only (a small HTTP/1.1 client on asyncio streams).

  scripts/serve_bench.py --llama-server /tmp/ref/llama/build/bin/llama-server --rounds 3
"""
import argparse
import asyncio
import json
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import time

import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_MODEL = pathlib.Path(os.environ.get("SQUISH_CACHE", pathlib.Path.home() / ".cache" / "squish")) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TOPICS = ["the sea", "a lighthouse", "autumn leaves", "a lost key", "the moon", "a city at night", "a small dog", "winter",
          "a train journey", "an old library", "the desert", "a thunderstorm", "a garden", "a mountain", "a river", "friendship"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def peak_rss_mib(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class ServerProcess:
    def __init__(self, kind, cmd, port, env=None):
        self.kind, self.port = kind, port
        self.url = "http://127.0.0.1:%d" % port
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    def wait_ready(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s" % (self.kind, self.proc.returncode))
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("%s not ready after %ds" % (self.kind, timeout))

    def stop(self):
        rss = peak_rss_mib(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return rss


class HTTPError(Exception):
    pass


async def post_stream(port, path, body, deadline):
    """POST a JSON body over a new connection; yields (status, None) then the body's bytes as they arrive
    (chunked or not)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        data = json.dumps(body).encode()
        writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % (path.encode(), len(data)) + data)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), deadline - time.monotonic())
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
        yield status, None
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), deadline - time.monotonic())
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    return
                chunk = await asyncio.wait_for(reader.readexactly(size + 2), deadline - time.monotonic())
                yield None, chunk[:-2]
        elif "content-length" in headers:
            yield None, await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), deadline - time.monotonic())
        else:
            while True:
                chunk = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
                if not chunk:
                    return
                yield None, chunk
    finally:
        writer.close()


async def one_request(port, i, tokens, t0, deadline):
    """One streaming chat request; returns its outcome, time to first token and generated tokens."""
    body = {"stream": True, "max_tokens": tokens, "ignore_eos": True, "temperature": 0.7, "top_k": 40,
            "top_p": 0.95, "min_p": 0.05, "seed": 1000 + i,
            "messages": [{"role": "user", "content": "Write a story about %s (%d)." % (TOPICS[i % len(TOPICS)], i)}]}
    start = time.perf_counter()
    first = None
    chunks = 0
    finished = False
    done = False
    buffer = b""
    try:
        async for status, data in post_stream(port, "/v1/chat/completions", body, deadline):
            if status is not None:
                if status != 200:
                    return {"outcome": "refused" if status in (429, 503) else "error:%d" % status}
                continue
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                line = line.strip()
                if not line.startswith(b"data: "):
                    continue
                payload = line[6:]
                if payload == b"[DONE]":
                    done = True
                    continue
                chunk = json.loads(payload)
                if "error" in chunk:
                    return {"outcome": "error-event"}
                for choice in chunk.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        if first is None:
                            first = time.perf_counter()
                        chunks += 1
                    if choice.get("finish_reason"):
                        finished = True
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
        return {"outcome": "cut", "error": repr(e)}
    end = time.perf_counter()
    if not (finished and done):
        return {"outcome": "cut"}
    return {"outcome": "completed", "ttft": (first or end) - start, "tokens": chunks, "end": end - t0}


async def load(port, concurrency, tokens, timeout):
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    results = await asyncio.gather(*[one_request(port, i, tokens, t0, deadline) for i in range(concurrency)])
    wall = time.perf_counter() - t0
    done = [r for r in results if r["outcome"] == "completed"]
    generated = sum(r["tokens"] for r in done)
    ttfts = sorted(r["ttft"] for r in done)

    def pct(p):
        return ttfts[min(len(ttfts) - 1, int(round(p / 100 * (len(ttfts) - 1))))] if ttfts else None

    outcomes = {}
    for r in results:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    return {"requests": concurrency, "outcomes": outcomes, "generated_tokens": generated, "wall_seconds": wall,
            "tokens_per_second": generated / wall if wall > 0 else 0, "ttft_p50": pct(50), "ttft_p99": pct(99),
            "ttft_max": ttfts[-1] if ttfts else None}


def run_server(kind, args, port):
    if kind == "squish":
        cmd = [args.squish, "serve", "--model", args.model, "--port", str(port), "--threads", str(args.threads),
               "--parallel", str(args.parallel), "--context", str(args.context), "--max-queue", "256"]
    else:
        cmd = [args.llama_server, "-m", args.model, "--port", str(port), "--host", "127.0.0.1",
               "-t", str(args.llama_threads or args.threads), "-np", str(args.np), "-cb", "-c", str(args.np * args.context)]
        env = dict(os.environ, OMP_WAIT_POLICY="passive") if args.llama_omp_passive else None
        return ServerProcess(kind, cmd, port, env)
    return ServerProcess(kind, cmd, port)


def measure(kind, args):
    server = run_server(kind, args, free_port())
    try:
        server.wait_ready(120)
        asyncio.run(load(server.port, 1, 8, 120))  # warm-up
        single = asyncio.run(load(server.port, 1, args.tokens, args.phase_timeout))
        loaded = asyncio.run(load(server.port, args.concurrency, args.tokens, args.phase_timeout))
    finally:
        rss = server.stop()
    return {"server": kind, "single": single, "load": loaded, "peak_rss_mib": rss,
            "speedup_over_single": loaded["tokens_per_second"] / single["tokens_per_second"] if single["tokens_per_second"] else None}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--squish", default=str(ROOT / ".build" / "release" / "squish"))
    p.add_argument("--llama-server", help="llama.cpp's llama-server, measured alternately with squish")
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parallel", type=int, default=32, help="squish serve --parallel")
    p.add_argument("--np", type=int, default=8, help="llama-server slots (-np)")
    p.add_argument("--llama-threads", type=int, help="llama-server -t (default: --threads)")
    p.add_argument("--llama-omp-passive", action="store_true",
                   help="run llama-server with OMP_WAIT_POLICY=passive (its OpenMP threads sleep instead of spinning)")
    p.add_argument("--context", type=int, default=1024, help="context per sequence (llama-server: -c np × this)")
    p.add_argument("--phase-timeout", type=float, default=600)
    p.add_argument("--json", help="write all results here")
    args = p.parse_args()
    kinds = ["squish"] + (["llama"] if args.llama_server else [])
    runs = []
    for r in range(args.rounds):
        for kind in (kinds if r % 2 == 0 else kinds[::-1]):
            res = measure(kind, args)
            res["round"] = r + 1
            runs.append(res)
            l, s = res["load"], res["single"]
            print("round %d %-6s single %6.1f tok/s | load %6.1f tok/s (%.2fx single) ttft p50 %.2fs p99 %.2fs | %s | peak RSS %.0f MiB"
                  % (r + 1, kind, s["tokens_per_second"], l["tokens_per_second"], res["speedup_over_single"] or 0,
                     l["ttft_p50"] or -1, l["ttft_p99"] or -1, l["outcomes"], res["peak_rss_mib"] or -1), flush=True)
    if args.json:
        json.dump({"args": vars(args), "runs": runs}, open(args.json, "w"), indent=2)
    if len(kinds) == 2:
        for r in range(args.rounds):
            a = next(x for x in runs if x["round"] == r + 1 and x["server"] == "squish")
            b = next(x for x in runs if x["round"] == r + 1 and x["server"] == "llama")
            print("round %d: squish/llama-server throughput %.2fx, p99 TTFT %.2fx" % (
                r + 1, a["load"]["tokens_per_second"] / b["load"]["tokens_per_second"],
                (a["load"]["ttft_p99"] or 0) / (b["load"]["ttft_p99"] or 1)))


if __name__ == "__main__":
    sys.exit(main())
