"""A small gateway loop guarded by Bursar: two routes, one failing open and
one failing closed, a fake LLM standing in for the provider.

    PYTHONPATH=GEN /usr/bin/python3 examples/python/example.py \
        --server 127.0.0.1:8081

(GEN: the generated stubs, see README.md.) Exit status 0 when every call was
answered (allowed, denied or refused), 1 on a Bursar error.
"""

import argparse
import logging
import sys

import grpc

from bursar_guard import BursarError, BursarGuard, CallRefused, FailMode, Usage


def fake_llm(prompt_tokens):
    """Stands in for a provider call: answers with half the allowed
    output tokens."""

    def call(model, max_output_tokens):
        output_tokens = max(1, (max_output_tokens or 256) // 2)
        text = f"[{model}] answer in {output_tokens} tokens"
        return text, Usage(input_tokens=prompt_tokens,
                           output_tokens=output_tokens)

    return call


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:8081",
                        help="bursard's gRPC address (host:port)")
    parser.add_argument("--team", default="search",
                        help="the team label of the calls")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    channel = grpc.insecure_channel(args.server)
    guard = BursarGuard(channel, routes={"chat": FailMode.OPEN,
                                         "batch-export": FailMode.CLOSED})
    calls = [
        ("chat", "gpt-4.1-mini", 800, 400, {"team": args.team, "user": "alice"}),
        ("batch-export", "gpt-4.1", 2000, 1000, {"team": args.team}),
    ]
    for route, model, prompt_tokens, max_tokens, labels in calls:
        try:
            result = guard.call(route, model, prompt_tokens,
                                fake_llm(prompt_tokens),
                                max_output_tokens=max_tokens, labels=labels)
        except CallRefused as refused:
            print(f"{route}: refused: {refused}")
            continue
        except BursarError as error:
            print(f"{route}: {error}", file=sys.stderr)
            return 1
        d = result.decision
        if d.failed_open:
            print(f"{route}: bursar unavailable ({d.unavailable_code.name}), "
                  f"failed open: {result.response}")
        else:
            cost = result.cost_nanos / 1e9 if result.cost_nanos is not None else None
            print(f"{route}: allowed {d.model} max_output_tokens="
                  f"{d.max_output_tokens} reservation={d.reservation_id} "
                  f"cost_usd={cost}: {result.response}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
