"""Tests of bursar_guard against a real bursard (started here on a free
loopback port with a temp data dir) and against in-process fake servers for
what a healthy bursard cannot show (a slow server, the exact Report sent).

Run by run_test.sh (ctest example_python), which generates the stubs:
    BURSARD=... BURSAR_SOURCE_DIR=... PYTHONPATH=GEN:examples/python \
        /usr/bin/python3 examples/python/bursar_guard_test.py
"""

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc

from bursar.v1 import admin_pb2
from bursar.v1 import admin_pb2_grpc
from bursar.v1 import decision_pb2
from bursar.v1 import decision_pb2_grpc

from bursar_guard import (BursarError, BursarGuard, CallRefused, FailMode,
                          Usage)

BURSARD = os.environ["BURSARD"]
SOURCE_DIR = os.environ["BURSAR_SOURCE_DIR"]
POLICY_DIR = os.path.join(SOURCE_DIR, "policies", "example")

# The flags every bursard of this test runs with (besides its address, ready
# file and data dir). Plaintext on loopback only.
BURSARD_FLAGS = [f"--policy_dir={POLICY_DIR}", "--policy_source=dir",
                 "--sync=none", "--insecure",
                 "--http_listen="]

# gpt-4.1-mini in policies/example/pricing.yaml: USD per 1M tokens.
MINI_INPUT_NANOS_PER_TOKEN = 400      # $0.40 / 1M
MINI_OUTPUT_NANOS_PER_TOKEN = 1600    # $1.60 / 1M


# bursard gets SIGKILL when the test process dies, so a crashed test leaves
# no server behind (util-linux setpriv sets PR_SET_PDEATHSIG and execs; a
# preexec_fn would fork a process that runs gRPC threads, which gRPC aborts).
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL", "--"]


class Bursard:
    """One bursard child process on 127.0.0.1:0 (--ready_file)."""

    def __init__(self, work_dir):
        self.work_dir = work_dir
        self.ready_file = os.path.join(work_dir, "bursard.ready")
        self.log_file = os.path.join(work_dir, "bursard.log")
        self.process = None
        self.address = None

    def start(self):
        argv = [*DIE_WITH_PARENT, BURSARD, "--listen=127.0.0.1:0",
                f"--ready_file={self.ready_file}",
                f"--data_dir={os.path.join(self.work_dir, 'data')}",
                *BURSARD_FLAGS]
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"bursard exited ({self.process.returncode}):\n{self.log()}")
            if os.path.exists(self.ready_file):
                with open(self.ready_file) as f:
                    self.address = f.read().strip()
                if self.address:
                    return self.address
            time.sleep(0.02)
        self.kill()
        raise AssertionError(f"bursard did not serve in 30 s:\n{self.log()}")

    def stop(self):
        """SIGTERM and wait: a clean shutdown."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self):
        with open(self.log_file, errors="replace") as f:
            return f.read()


def dead_address():
    """A loopback address nobody listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


class FakeDecision(decision_pb2_grpc.DecisionServicer):
    """Allows every Check with reservation "r-fake" and records Reports; with
    hang=True, every Check waits until released (a slow bursard)."""

    def __init__(self, hang=False):
        self.hang = hang
        self.release = threading.Event()
        self.entered = threading.Event()
        self.time_remaining = None
        self.reports = []

    def Check(self, request, context):
        self.time_remaining = context.time_remaining()
        self.entered.set()
        if self.hang:
            self.release.wait(30)
        return decision_pb2.CheckResponse(
            verdict=decision_pb2.VERDICT_ALLOW, model=request.model,
            max_output_tokens=request.max_output_tokens or 100,
            reservation_id="r-fake")

    def Report(self, request, context):
        self.reports.append(request)
        return decision_pb2.ReportResponse(cost_nanos=123)


def serve_fake(servicer):
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
    decision_pb2_grpc.add_DecisionServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


class StepClock:
    """A monotonic clock that advances `step` seconds per reading."""

    def __init__(self, step):
        self.now = 1000.0
        self.step = step

    def __call__(self):
        self.now += self.step
        return self.now


def llm_recording(calls, output_tokens=200, input_tokens=1000):
    def llm(model, max_output_tokens):
        calls.append((model, max_output_tokens))
        return f"answer from {model}", Usage(input_tokens=input_tokens,
                                             output_tokens=output_tokens)
    return llm


ROUTES = {"chat": FailMode.OPEN, "batch-export": FailMode.CLOSED}


class RealBursardTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="bursar-python-example-")
        cls.bursard = Bursard(cls.tmp.name)
        cls.address = cls.bursard.start()
        cls.channel = grpc.insecure_channel(cls.address)
        cls.admin = admin_pb2_grpc.AdminStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.bursard.stop()
        cls.tmp.cleanup()

    def set_budget(self, name, team, amount_nanos):
        self.admin.SetBudget(admin_pb2.SetBudgetRequest(
            budget=admin_pb2.Budget(name=name, selector={"team": team},
                                    period=admin_pb2.PERIOD_MONTH,
                                    amount_nanos=amount_nanos),
            actor="python-example-test", reason="test"), timeout=10)

    def budget(self, name):
        return self.admin.GetBudget(admin_pb2.GetBudgetRequest(name=name),
                                    timeout=10)

    def test_allowed_call_is_reported_and_its_spend_visible(self):
        self.set_budget("py-allowed", "py-allowed", 10 * 10**9)  # $10
        guard = BursarGuard(self.channel, ROUTES)
        calls = []
        result = guard.call("chat", "gpt-4.1-mini", 1000,
                            llm_recording(calls, output_tokens=200),
                            max_output_tokens=500,
                            labels={"team": "py-allowed", "user": "alice"})
        self.assertTrue(result.decision.allowed)
        self.assertFalse(result.decision.failed_open)
        self.assertTrue(result.decision.reservation_id)
        self.assertEqual(calls, [("gpt-4.1-mini", 500)])
        expected = (1000 * MINI_INPUT_NANOS_PER_TOKEN +
                    200 * MINI_OUTPUT_NANOS_PER_TOKEN)
        self.assertEqual(result.cost_nanos, expected)
        budget = self.budget("py-allowed")
        self.assertEqual(budget.spent_nanos, expected)
        self.assertEqual(budget.held_nanos, 0)

    def test_denied_over_budget_never_calls_the_llm(self):
        self.set_budget("py-denied", "py-denied", 1000)  # $0.000001
        guard = BursarGuard(self.channel, ROUTES)
        calls = []
        with self.assertRaises(CallRefused) as refused:
            guard.call("chat", "gpt-4.1", 1000, llm_recording(calls),
                       max_output_tokens=500, labels={"team": "py-denied"})
        decision = refused.exception.decision
        self.assertFalse(decision.allowed)
        self.assertIsNone(decision.unavailable_code)
        self.assertIn("budget:py-denied", [rule for rule, _ in decision.reasons])
        self.assertEqual(calls, [])
        budget = self.budget("py-denied")
        self.assertEqual((budget.spent_nanos, budget.held_nanos), (0, 0))

    def test_bad_request_is_an_error_in_every_mode(self):
        guard = BursarGuard(self.channel, ROUTES)
        for route in ROUTES:
            with self.assertRaises(BursarError) as error:
                guard.check(route, "no-such-model", 10)
            self.assertEqual(error.exception.code,
                             grpc.StatusCode.INVALID_ARGUMENT)

    def test_runnable_example(self):
        run = subprocess.run(
            [sys.executable, os.path.join(os.path.dirname(__file__),
                                          "example.py"),
             "--server", self.address, "--team", "py-example"],
            capture_output=True, text=True, timeout=60, env=os.environ)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertRegex(run.stdout, r"chat: allowed gpt-4.1-mini ")
        self.assertRegex(run.stdout, r"batch-export: allowed gpt-4.1 ")
        run = subprocess.run(
            [sys.executable, os.path.join(os.path.dirname(__file__),
                                          "example.py"),
             "--server", dead_address()],
            capture_output=True, text=True, timeout=60, env=os.environ)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        # A dead port is refused at once, or (on a loaded machine) the
        # deadline passes first: either way the route fails open.
        self.assertRegex(run.stdout,
                         r"chat: bursar unavailable "
                         r"\((UNAVAILABLE|DEADLINE_EXCEEDED)\), failed open")
        self.assertIn("batch-export: refused: bursar unavailable", run.stdout)


class UnavailableTest(unittest.TestCase):

    def check_fail_modes(self, address):
        with grpc.insecure_channel(address) as channel:
            guard = BursarGuard(channel, ROUTES)
            calls = []
            result = guard.call("chat", "gpt-4.1", 1000, llm_recording(calls),
                                max_output_tokens=300,
                                labels={"team": "search"})
            self.assertTrue(result.decision.failed_open)
            self.assertEqual(result.decision.unavailable_code,
                             grpc.StatusCode.UNAVAILABLE)
            self.assertEqual(calls, [("gpt-4.1", 300)])
            self.assertIsNone(result.cost_nanos)  # nothing to report against

            for route in ("batch-export", "unlisted-route"):
                with self.assertRaises(CallRefused) as refused:
                    guard.call(route, "gpt-4.1", 1000, llm_recording(calls))
                self.assertEqual(refused.exception.decision.fail_mode,
                                 FailMode.CLOSED)
            self.assertEqual(len(calls), 1)

    def test_unreachable_port(self):
        self.check_fail_modes(dead_address())

    def test_stopped_server(self):
        with tempfile.TemporaryDirectory(prefix="bursar-python-stop-") as tmp:
            bursard = Bursard(tmp)
            address = bursard.start()
            try:
                with grpc.insecure_channel(address) as channel:
                    guard = BursarGuard(channel, ROUTES)
                    self.assertTrue(guard.check("chat", "gpt-4.1", 10).allowed)
            finally:
                bursard.stop()
            self.check_fail_modes(address)


class DeadlineTest(unittest.TestCase):

    def test_slow_server_hits_the_deadline(self):
        fake = FakeDecision(hang=True)
        server, address = serve_fake(fake)
        try:
            with grpc.insecure_channel(address) as channel:
                # Connected first, so the deadline is spent waiting for the
                # answer, not for the connection.
                grpc.channel_ready_future(channel).result(timeout=10)
                guard = BursarGuard(channel, ROUTES, check_timeout_seconds=2.0)
                decision = guard.check("chat", "gpt-4.1", 10)
                self.assertTrue(fake.entered.wait(10))
                # The deadline reached the server with the call (the
                # grpc-timeout header is rounded, hence the slack) ...
                self.assertIsNotNone(fake.time_remaining)
                self.assertLess(fake.time_remaining, 2.5)
                # ... and ended it: the route's fail mode answered.
                self.assertEqual(decision.unavailable_code,
                                 grpc.StatusCode.DEADLINE_EXCEEDED)
                self.assertTrue(decision.failed_open)
                closed = guard.check("batch-export", "gpt-4.1", 10)
                self.assertFalse(closed.allowed)
                self.assertEqual(closed.unavailable_code,
                                 grpc.StatusCode.DEADLINE_EXCEEDED)
        finally:
            fake.release.set()
            server.stop(grace=None)


class ReportTest(unittest.TestCase):

    def test_report_carries_outcome_usage_and_latency(self):
        fake = FakeDecision()
        server, address = serve_fake(fake)
        try:
            with grpc.insecure_channel(address) as channel:
                guard = BursarGuard(channel, ROUTES, clock=StepClock(1.5))
                result = guard.call("chat", "gpt-4.1", 1000,
                                    llm_recording([], output_tokens=42,
                                                  input_tokens=1000))
                self.assertEqual(result.cost_nanos, 123)

                def failing_llm(model, max_output_tokens):
                    raise TimeoutError("provider timed out")

                with self.assertRaises(TimeoutError):
                    guard.call("chat", "gpt-4.1", 1000, failing_llm)
        finally:
            server.stop(grace=None)
        self.assertEqual(len(fake.reports), 2)
        ok, failed = fake.reports
        self.assertEqual(ok.reservation_id, "r-fake")
        self.assertEqual(ok.outcome, decision_pb2.OUTCOME_SUCCESS)
        self.assertEqual((ok.usage.input_tokens, ok.usage.output_tokens),
                         (1000, 42))
        self.assertEqual(ok.latency.ToNanoseconds(), 1_500_000_000)
        self.assertEqual(failed.outcome, decision_pb2.OUTCOME_FAILURE)
        self.assertEqual(failed.usage.output_tokens, 0)
        self.assertEqual(failed.latency.ToNanoseconds(), 1_500_000_000)


if __name__ == "__main__":
    unittest.main(verbosity=2)
