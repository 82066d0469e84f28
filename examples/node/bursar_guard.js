'use strict';
// A gateway-side guard around LLM calls: Check with Bursar before the call,
// Report after it, with a deadline on every RPC and a fail-open or
// fail-closed choice per route for when Bursar is unreachable or slow.
//
//   const guard = new BursarGuard({
//     address: 'bursar:8081',
//     routes: {chat: FailMode.OPEN, 'batch-export': FailMode.CLOSED},
//   });
//   const result = await guard.call('chat',
//       {model: 'gpt-4.1', inputTokens: 1200, labels: {team: 'search'}},
//       async (model, maxOutputTokens) => {
//         const answer = await myLlm(model, maxOutputTokens);
//         return {response: answer, usage: {inputTokens: ..., outputTokens: ...}};
//       });
//
// Money is exact: *Nanos values are BigInt nano-USD (1e-9 USD).
// The protos are read from proto/ of the repository (BURSAR_PROTO_DIR
// overrides it) with @grpc/proto-loader; no generated code.

const path = require('path');
const crypto = require('crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const FailMode = Object.freeze({OPEN: 'open', CLOSED: 'closed'});

// Status codes that mean "Bursar is unreachable, slow or overloaded": the
// route's fail mode decides. Every other error (INVALID_ARGUMENT,
// UNAUTHENTICATED, PERMISSION_DENIED, ...) is a caller or configuration bug
// and is thrown as BursarError in every mode, so a misconfiguration never
// silently turns budget enforcement off.
const UNAVAILABILITY_CODES = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.INTERNAL,
  grpc.status.UNKNOWN,
  grpc.status.CANCELLED,
]);

const STATUS_NAMES = Object.fromEntries(
    Object.entries(grpc.status).map(([name, code]) => [code, name]));

function statusName(code) {
  return STATUS_NAMES[code] || `CODE_${code}`;
}

// Loads bursar.v1 (Decision and Admin) from the .proto files.
function loadBursarProtos(protoDir) {
  const dir = protoDir || process.env.BURSAR_PROTO_DIR ||
      path.join(__dirname, '..', '..', 'proto');
  const definition = protoLoader.loadSync(
      ['bursar/v1/decision.proto', 'bursar/v1/admin.proto'], {
        includeDirs: [dir],
        keepCase: true,   // field names as in the .proto files
        longs: String,    // int64 as decimal strings: exact
        enums: String,    // enum values by name
        defaults: true,
        oneofs: true,
      });
  return grpc.loadPackageDefinition(definition).bursar.v1;
}

// Bursar answered with an error no fail mode should hide.
class BursarError extends Error {
  constructor(code, details) {
    super(`bursar: ${statusName(code)}: ${details}`);
    this.name = 'BursarError';
    this.code = code;
    this.details = details;
  }
}

// The LLM call was not made: denied by a budget or rule, or Bursar was
// unavailable on a fail-closed route. `decision` says which.
class CallRefused extends Error {
  constructor(decision) {
    const why = decision.unavailableCode !== null ?
        `bursar unavailable (${statusName(decision.unavailableCode)}) ` +
            'and the route fails closed' :
        decision.reasons.map((r) => `${r.rule}: ${r.message}`).join('; ') ||
            'denied';
    super(why);
    this.name = 'CallRefused';
    this.decision = decision;
  }
}

function durationFromMs(ms) {
  const nanos = BigInt(Math.round(ms * 1e6));
  return {
    seconds: String(nanos / 1000000000n),
    nanos: Number(nanos % 1000000000n),
  };
}

// Check before each LLM call, Report after it.
//
// Options:
//   address:           bursard's gRPC host:port (or pass `client`).
//   credentials:       grpc.credentials.createSsl(...) for TLS; default
//                      plaintext.
//   routes:            {routeName: FailMode}; unlisted routes get
//                      defaultFailMode.
//   defaultFailMode:   FailMode.CLOSED unless you decide otherwise.
//   checkTimeoutMs:    deadline of every Check (default 200). Bursard answers
//                      in about a millisecond; the deadline bounds what an
//                      outage adds to each LLM call.
//   reportTimeoutMs:   deadline of each Report attempt (default 1000).
//                      Reports are retried once (idempotent by reservation
//                      id); one that never arrives is charged at its
//                      estimate when the reservation expires.
//   metadata:          {key: value} sent with every RPC, e.g.
//                      {authorization: 'Bearer ' + token}.
//   clock:             () => milliseconds, for the latency reported.
//   logger:            {warn, error}; default console.
class BursarGuard {
  constructor(options) {
    const o = options || {};
    const checkTimeoutMs = o.checkTimeoutMs ?? 200;
    const reportTimeoutMs = o.reportTimeoutMs ?? 1000;
    if (!(checkTimeoutMs > 0) || !(reportTimeoutMs > 0)) {
      throw new RangeError('checkTimeoutMs and reportTimeoutMs must be positive');
    }
    const v1 = loadBursarProtos(o.protoDir);
    this._client = o.client || new v1.Decision(
        o.address, o.credentials || grpc.credentials.createInsecure());
    this._routes = new Map(Object.entries(o.routes || {}));
    this._defaultFailMode = o.defaultFailMode || FailMode.CLOSED;
    this._checkTimeoutMs = checkTimeoutMs;
    this._reportTimeoutMs = reportTimeoutMs;
    this._metadata = new grpc.Metadata();
    for (const [key, value] of Object.entries(o.metadata || {})) {
      this._metadata.set(key, value);
    }
    this._clock = o.clock || (() => performance.now());
    this._log = o.logger || console;
  }

  failMode(route) {
    return this._routes.get(route) || this._defaultFailMode;
  }

  close() {
    this._client.close();
  }

  _unary(method, request, timeoutMs) {
    return new Promise((resolve, reject) => {
      this._client[method](
          request, this._metadata, {deadline: Date.now() + timeoutMs},
          (error, response) => (error ? reject(error) : resolve(response)));
    });
  }

  // Asks Bursar whether the call may go ahead. Resolves to a Decision; never
  // rejects for an unavailable Bursar (the route's fail mode decides).
  // Rejects with BursarError for errors no fail mode should hide.
  //
  // Decision: {allowed, model, maxOutputTokens, reservationId, reasons:
  // [{rule, message}], estimatedCostNanos (BigInt), retryAfterMs (or null),
  // unavailableCode (grpc status or null), failMode (or null), failedOpen}
  async check(route, request) {
    const r = request || {};
    const message = {
      request_id: r.requestId || crypto.randomUUID(),
      model: r.model,
      input_tokens: String(r.inputTokens || 0),
      max_output_tokens: String(r.maxOutputTokens || 0),
      labels: r.labels || {},
      priority: r.priority || '',
    };
    let response;
    try {
      response = await this._unary('Check', message, this._checkTimeoutMs);
    } catch (error) {
      if (!UNAVAILABILITY_CODES.has(error.code)) {
        throw new BursarError(error.code, error.details);
      }
      const mode = this.failMode(route);
      this._log.warn(`bursar check failed (${statusName(error.code)}: ` +
          `${error.details}); route ${JSON.stringify(route)} fails ${mode}`);
      return {
        allowed: mode === FailMode.OPEN,
        model: r.model,
        maxOutputTokens: r.maxOutputTokens || 0,
        reservationId: '',
        reasons: [],
        estimatedCostNanos: 0n,
        retryAfterMs: null,
        unavailableCode: error.code,
        failMode: mode,
        failedOpen: mode === FailMode.OPEN,
      };
    }
    const retryAfter = response.retry_after;
    return {
      allowed: response.verdict === 'VERDICT_ALLOW',
      model: response.model,
      maxOutputTokens: Number(response.max_output_tokens),
      reservationId: response.reservation_id,
      reasons: response.reasons.map((x) => ({rule: x.rule, message: x.message})),
      estimatedCostNanos: BigInt(response.estimated_cost_nanos),
      retryAfterMs: retryAfter ?
          Number(retryAfter.seconds) * 1000 + retryAfter.nanos / 1e6 : null,
      unavailableCode: null,
      failMode: null,
      failedOpen: false,
    };
  }

  // Tells Bursar what an allowed call used. Resolves to the cost charged
  // (BigInt nano-USD), or null when there is nothing to report (failed open)
  // or the Report could not be delivered (logged).
  //
  // usage: {inputTokens, outputTokens, cachedInputTokens}
  // outcome: 'OUTCOME_SUCCESS' | 'OUTCOME_FAILURE' | 'OUTCOME_RETRY' |
  //          'OUTCOME_CANCELLED'
  async report(decision, usage, {outcome = 'OUTCOME_SUCCESS', latencyMs} = {}) {
    if (!decision.reservationId) return null;
    const message = {
      reservation_id: decision.reservationId,
      usage: {
        input_tokens: String(usage.inputTokens || 0),
        cached_input_tokens: String(usage.cachedInputTokens || 0),
        output_tokens: String(usage.outputTokens || 0),
      },
      outcome,
    };
    if (latencyMs !== undefined && latencyMs !== null) {
      message.latency = durationFromMs(latencyMs);
    }
    for (const attempt of [1, 2]) {
      try {
        const response =
            await this._unary('Report', message, this._reportTimeoutMs);
        return BigInt(response.cost_nanos);
      } catch (error) {
        if (!UNAVAILABILITY_CODES.has(error.code)) {
          throw new BursarError(error.code, error.details);
        }
        this._log.warn(`bursar report ${decision.reservationId} attempt ` +
            `${attempt} failed (${statusName(error.code)}: ${error.details})`);
      }
    }
    return null;
  }

  // Check, then llm(model, maxOutputTokens) with the model and ceiling Bursar
  // chose, then Report with the usage, outcome and latency. `llm` resolves to
  // {response, usage}. Rejects with CallRefused when the call may not be made
  // (llm is not called), BursarError as check() does. If llm throws, a
  // failure with zero usage is reported and the error propagates. A Report
  // that fails is logged, never thrown: the call has happened.
  //
  // Resolves to {decision, response, usage, costNanos (BigInt or null)}.
  async call(route, request, llm) {
    const decision = await this.check(route, request);
    if (!decision.allowed) throw new CallRefused(decision);
    const started = this._clock();
    let result;
    try {
      result = await llm(decision.model, decision.maxOutputTokens);
    } catch (error) {
      await this._reportAfterCall(
          decision, {inputTokens: 0, outputTokens: 0}, 'OUTCOME_FAILURE',
          started);
      throw error;
    }
    const costNanos = await this._reportAfterCall(
        decision, result.usage, 'OUTCOME_SUCCESS', started);
    return {decision, response: result.response, usage: result.usage,
      costNanos};
  }

  async _reportAfterCall(decision, usage, outcome, started) {
    try {
      return await this.report(decision, usage,
          {outcome, latencyMs: this._clock() - started});
    } catch (error) {
      this._log.error(`bursar rejected the report of ` +
          `${decision.reservationId}: ${error.message}`);
      return null;
    }
  }
}

module.exports = {
  BursarGuard,
  BursarError,
  CallRefused,
  FailMode,
  UNAVAILABILITY_CODES,
  loadBursarProtos,
  statusName,
};
