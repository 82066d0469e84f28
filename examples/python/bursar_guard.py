"""A gateway-side guard around LLM calls: Check with Bursar before the call,
Report after it, with a deadline on every RPC and a fail-open or fail-closed
choice per route for when Bursar is unreachable or slow.

Needs Debian's python3-grpcio and python3-protobuf, and the stubs generated
from proto/bursar/v1 (see README.md) on sys.path as the package bursar.v1.

    guard = BursarGuard(grpc.insecure_channel("bursar:8081"),
                        routes={"chat": FailMode.OPEN,
                                "batch-export": FailMode.CLOSED})
    result = guard.call("chat", "gpt-4.1", input_tokens=1200,
                        labels={"team": "search", "user": "alice"},
                        llm=lambda model, max_tokens: my_llm(model, max_tokens))

A BursarGuard is thread-safe (gRPC channels and stubs are).
"""

import dataclasses
import enum
import logging
import time
import uuid
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import grpc
from google.protobuf import duration_pb2

from bursar.v1 import decision_pb2
from bursar.v1 import decision_pb2_grpc

log = logging.getLogger("bursar_guard")


class FailMode(enum.Enum):
    """What a route does when Bursar cannot answer in time."""
    # Make the LLM call anyway, unmetered: availability over budget safety.
    OPEN = "open"
    # Refuse the call: budget safety over availability.
    CLOSED = "closed"


# Status codes that mean "Bursar is unreachable, slow or overloaded": the
# route's fail mode decides. Every other error is a caller or configuration
# bug (a malformed request, a bad token, a wrong role) and is raised as
# BursarError in every mode, so a misconfiguration never silently turns
# budget enforcement off.
UNAVAILABILITY_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
})


@dataclasses.dataclass(frozen=True)
class Usage:
    """Tokens an LLM call actually used."""
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the gateway may do. `allowed` is the only field to branch on."""
    allowed: bool
    # The model and output-token ceiling to send to the provider.
    model: str
    max_output_tokens: int
    # Pass to report(); empty when denied or when failing open.
    reservation_id: str = ""
    # (rule, message) pairs from Bursar, e.g. why a call was denied.
    reasons: Tuple[Tuple[str, str], ...] = ()
    estimated_cost_nanos: int = 0
    # For a rate-limit denial: seconds to wait before retrying.
    retry_after_seconds: Optional[float] = None
    # Set when Bursar did not answer and the route's fail mode decided:
    # the gRPC status code, and which mode applied.
    unavailable_code: Optional[grpc.StatusCode] = None
    fail_mode: Optional[FailMode] = None

    @property
    def failed_open(self) -> bool:
        return self.unavailable_code is not None and self.allowed


class BursarError(Exception):
    """Bursar answered with an error no fail mode should hide (e.g.
    INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED)."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"bursar: {code.name}: {details}")
        self.code = code
        self.details = details


class CallRefused(Exception):
    """The LLM call was not made: denied by a budget or rule, or Bursar was
    unavailable on a fail-closed route. `decision` says which."""

    def __init__(self, decision: Decision):
        if decision.unavailable_code is not None:
            why = (f"bursar unavailable ({decision.unavailable_code.name}) "
                   f"and the route fails closed")
        else:
            why = "; ".join(f"{rule}: {message}"
                            for rule, message in decision.reasons) or "denied"
        super().__init__(why)
        self.decision = decision


@dataclasses.dataclass(frozen=True)
class CallResult:
    """The outcome of BursarGuard.call()."""
    decision: Decision
    # What the llm function returned.
    response: object
    usage: Usage
    # The actual cost Bursar charged; None when failing open (nothing to
    # report against) or when the Report could not be delivered.
    cost_nanos: Optional[int]


class BursarGuard:
    """Check before each LLM call, Report after it.

    Args:
      channel: a gRPC channel to bursard (grpc.secure_channel for TLS).
      routes: route name -> FailMode. A route not listed gets
        `default_fail_mode`.
      default_fail_mode: for unlisted routes; CLOSED unless you decide
        otherwise.
      check_timeout_seconds: deadline of every Check. Bursard answers in
        about a millisecond; the deadline bounds what an outage adds to each
        LLM call.
      report_timeout_seconds: deadline of every Report attempt. A Report is
        off the caller's critical path and is retried once (it is
        idempotent by reservation id); one that never arrives is charged at
        its estimate when the reservation expires.
      metadata: call metadata for every RPC, e.g.
        [("authorization", "Bearer " + token)].
      clock: monotonic seconds, for the latency reported (tests inject one).
    """

    def __init__(self, channel: grpc.Channel,
                 routes: Mapping[str, FailMode],
                 default_fail_mode: FailMode = FailMode.CLOSED,
                 check_timeout_seconds: float = 0.2,
                 report_timeout_seconds: float = 1.0,
                 metadata: Optional[List[Tuple[str, str]]] = None,
                 clock: Callable[[], float] = time.monotonic):
        if check_timeout_seconds <= 0 or report_timeout_seconds <= 0:
            raise ValueError("timeouts must be positive (seconds)")
        self._stub = decision_pb2_grpc.DecisionStub(channel)
        self._routes: Dict[str, FailMode] = dict(routes)
        self._default_fail_mode = default_fail_mode
        self._check_timeout = check_timeout_seconds
        self._report_timeout = report_timeout_seconds
        self._metadata = list(metadata or [])
        self._clock = clock

    def fail_mode(self, route: str) -> FailMode:
        return self._routes.get(route, self._default_fail_mode)

    def check(self, route: str, model: str, input_tokens: int,
              max_output_tokens: int = 0,
              labels: Optional[Mapping[str, str]] = None,
              request_id: str = "", priority: str = "") -> Decision:
        """Asks Bursar whether the call may go ahead. Never raises for an
        unavailable Bursar: the route's fail mode becomes the Decision.
        Raises BursarError for errors no fail mode should hide."""
        request = decision_pb2.CheckRequest(
            request_id=request_id or uuid.uuid4().hex, model=model,
            input_tokens=input_tokens, max_output_tokens=max_output_tokens,
            labels=dict(labels or {}), priority=priority)
        try:
            response = self._stub.Check(request, timeout=self._check_timeout,
                                        metadata=self._metadata)
        except grpc.RpcError as error:
            code = error.code()
            if code not in UNAVAILABILITY_CODES:
                raise BursarError(code, error.details()) from error
            mode = self.fail_mode(route)
            log.warning("bursar check failed (%s: %s); route %r fails %s",
                        code.name, error.details(), route, mode.value)
            return Decision(allowed=mode is FailMode.OPEN, model=model,
                            max_output_tokens=max_output_tokens,
                            unavailable_code=code, fail_mode=mode)
        retry_after = None
        if response.HasField("retry_after"):
            retry_after = response.retry_after.ToTimedelta().total_seconds()
        return Decision(
            allowed=response.verdict == decision_pb2.VERDICT_ALLOW,
            model=response.model,
            max_output_tokens=response.max_output_tokens,
            reservation_id=response.reservation_id,
            reasons=tuple((r.rule, r.message) for r in response.reasons),
            estimated_cost_nanos=response.estimated_cost_nanos,
            retry_after_seconds=retry_after)

    def report(self, decision: Decision, usage: Usage,
               outcome: int = decision_pb2.OUTCOME_SUCCESS,
               latency_seconds: Optional[float] = None) -> Optional[int]:
        """Tells Bursar what an allowed call used; returns the cost charged
        in nano-USD, or None when there is nothing to report (failed open)
        or the Report could not be delivered (logged)."""
        if not decision.reservation_id:
            return None
        request = decision_pb2.ReportRequest(
            reservation_id=decision.reservation_id,
            usage=decision_pb2.Usage(
                input_tokens=usage.input_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                output_tokens=usage.output_tokens),
            outcome=outcome)
        if latency_seconds is not None:
            latency = duration_pb2.Duration()
            latency.FromNanoseconds(int(round(latency_seconds * 1e9)))
            request.latency.CopyFrom(latency)
        for attempt in (1, 2):
            try:
                response = self._stub.Report(request,
                                             timeout=self._report_timeout,
                                             metadata=self._metadata)
                return response.cost_nanos
            except grpc.RpcError as error:
                if error.code() not in UNAVAILABILITY_CODES:
                    raise BursarError(error.code(), error.details()) from error
                log.warning("bursar report %s attempt %d failed (%s: %s)",
                            decision.reservation_id, attempt,
                            error.code().name, error.details())
        return None

    def call(self, route: str, model: str, input_tokens: int,
             llm: Callable[[str, int], Tuple[object, Usage]],
             max_output_tokens: int = 0,
             labels: Optional[Mapping[str, str]] = None,
             request_id: str = "", priority: str = "") -> CallResult:
        """Check, then llm(model, max_output_tokens) with the model and
        ceiling Bursar chose, then Report with the usage, outcome and latency.

        `llm` returns (response, Usage). Raises CallRefused when the call may
        not be made (llm is not called), BursarError as check() does. If llm
        raises, a failure with zero usage is reported and the exception
        propagates. A Report that fails is logged, never raised: the call
        has happened.
        """
        decision = self.check(route, model, input_tokens, max_output_tokens,
                              labels, request_id, priority)
        if not decision.allowed:
            raise CallRefused(decision)
        started = self._clock()
        try:
            response, usage = llm(decision.model, decision.max_output_tokens)
        except BaseException:
            self._report_after_call(decision, Usage(0, 0),
                                    decision_pb2.OUTCOME_FAILURE, started)
            raise
        cost = self._report_after_call(decision, usage,
                                       decision_pb2.OUTCOME_SUCCESS, started)
        return CallResult(decision=decision, response=response, usage=usage,
                          cost_nanos=cost)

    def _report_after_call(self, decision: Decision, usage: Usage,
                           outcome: int, started: float) -> Optional[int]:
        # The call has happened: its answer (or exception) must reach the
        # caller whatever Report says, so a rejected Report is logged here.
        try:
            return self.report(decision, usage, outcome=outcome,
                               latency_seconds=self._clock() - started)
        except BursarError:
            log.exception("bursar rejected the report of %s",
                          decision.reservation_id)
            return None
