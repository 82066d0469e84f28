'use strict';
// Tests of bursar_guard against a real bursard (started here on a free
// loopback port with a temp data dir) and against in-process fake servers
// for what a healthy bursard cannot show (a slow server, the exact Report
// sent). Run by run_test.sh (ctest example_node):
//   BURSARD=... BURSAR_SOURCE_DIR=... NODE_PATH=.../node_modules \
//       node --test examples/node/bursar_guard.test.js

const assert = require('node:assert/strict');
const {test, describe, before, after} = require('node:test');
const {spawn, execFile} = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');

const {BursarGuard, BursarError, CallRefused, FailMode, loadBursarProtos} =
    require('./bursar_guard');

const BURSARD = process.env.BURSARD;
const SOURCE_DIR = process.env.BURSAR_SOURCE_DIR;
assert.ok(BURSARD && SOURCE_DIR, 'set BURSARD and BURSAR_SOURCE_DIR');
const POLICY_DIR = path.join(SOURCE_DIR, 'policies', 'example');

// The flags every bursard of this test runs with (besides its address, ready
// file and data dir). Plaintext on loopback only.
const BURSARD_FLAGS = [`--policy_dir=${POLICY_DIR}`, '--policy_source=dir',
  '--sync=none', '--insecure', '--http_listen='];

// gpt-4.1-mini in policies/example/pricing.yaml, nano-USD per token.
const MINI_INPUT_NANOS_PER_TOKEN = 400n;    // $0.40 / 1M
const MINI_OUTPUT_NANOS_PER_TOKEN = 1600n;  // $1.60 / 1M

const v1 = loadBursarProtos(path.join(SOURCE_DIR, 'proto'));
const ROUTES = {'chat': FailMode.OPEN, 'batch-export': FailMode.CLOSED};
const quiet = {warn: () => {}, error: () => {}};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One bursard child process on 127.0.0.1:0 (--ready_file).
class Bursard {
  constructor(workDir) {
    this.workDir = workDir;
    this.readyFile = path.join(workDir, 'bursard.ready');
    this.logFile = path.join(workDir, 'bursard.log');
    this.child = null;
    this.exited = null;
  }

  async start() {
    const log = fs.openSync(this.logFile, 'a');
    // setpriv (util-linux) makes the kernel SIGKILL bursard when this test
    // process dies, however it dies.
    this.child = spawn('setpriv', [
      '--pdeathsig', 'KILL', '--', BURSARD, '--listen=127.0.0.1:0', `--ready_file=${this.readyFile}`,
      `--data_dir=${path.join(this.workDir, 'data')}`, ...BURSARD_FLAGS,
    ], {stdio: ['ignore', log, log]});
    fs.closeSync(log);
    const child = this.child;
    process.on('exit', () => child.kill('SIGKILL'));
    this.exited = new Promise((resolve) => {
      child.on('exit', resolve);
      child.on('error', (error) => resolve(`spawn error: ${error.message}`));
    });
    let exitCode = null;
    this.exited.then((code) => { exitCode = code; });
    for (let i = 0; i < 1500; i++) {  // up to 30 s
      if (exitCode !== null) {
        throw new Error(`bursard exited (${exitCode}):\n${this.log()}`);
      }
      if (fs.existsSync(this.readyFile)) {
        const address = fs.readFileSync(this.readyFile, 'utf8').trim();
        if (address) return address;
      }
      await sleep(20);
    }
    this.child.kill('SIGKILL');
    throw new Error(`bursard did not serve in 30 s:\n${this.log()}`);
  }

  // SIGTERM and wait: a clean shutdown.
  async stop() {
    if (this.child && this.child.exitCode === null &&
        this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      await this.exited;
    }
  }

  log() {
    return fs.existsSync(this.logFile) ? fs.readFileSync(this.logFile, 'utf8') : '';
  }
}

// A loopback address nobody listens on (bound, then closed).
function deadAddress() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const {port} = server.address();
      server.close(() => resolve(`127.0.0.1:${port}`));
    });
  });
}

function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

// Allows every Check with reservation "r-fake" and records Reports; with
// hang, every Check waits until released (a slow bursard).
async function serveFake({hang = false} = {}) {
  const fake = {reports: [], deadlineMs: null, entered: false, releases: []};
  const server = new grpc.Server();
  server.addService(v1.Decision.service, {
    Check(call, callback) {
      fake.entered = true;
      const deadline = call.getDeadline();
      fake.deadlineMs = deadline instanceof Date ?
          deadline.getTime() - Date.now() : Number(deadline) - Date.now();
      const answer = () => callback(null, {
        verdict: 'VERDICT_ALLOW', model: call.request.model,
        max_output_tokens: call.request.max_output_tokens,
        reservation_id: 'r-fake',
      });
      if (hang) fake.releases.push(answer); else answer();
    },
    Report(call, callback) {
      fake.reports.push(call.request);
      callback(null, {cost_nanos: '123'});
    },
  });
  const port = await new Promise((resolve, reject) => server.bindAsync(
      '127.0.0.1:0', grpc.ServerCredentials.createInsecure(),
      (error, p) => (error ? reject(error) : resolve(p))));
  fake.address = `127.0.0.1:${port}`;
  fake.stop = () => {
    fake.releases.forEach((release) => release());
    server.forceShutdown();
  };
  return fake;
}

function recordingLlm(calls, {inputTokens = 1000, outputTokens = 200} = {}) {
  return async (model, maxOutputTokens) => {
    calls.push([model, maxOutputTokens]);
    return {response: `answer from ${model}`, usage: {inputTokens, outputTokens}};
  };
}

function unary(client, method, request) {
  return new Promise((resolve, reject) => client[method](
      request, {deadline: Date.now() + 10000},
      (error, response) => (error ? reject(error) : resolve(response))));
}

describe('against a real bursard', () => {
  let bursard;
  let address;
  let admin;
  let work;

  before(async () => {
    work = tempDir('bursar-node-example-');
    bursard = new Bursard(work);
    address = await bursard.start();
    admin = new v1.Admin(address, grpc.credentials.createInsecure());
  });

  after(async () => {
    if (admin) admin.close();
    if (bursard) await bursard.stop();
    fs.rmSync(work, {recursive: true, force: true});
  });

  const setBudget = (name, team, amountNanos) => unary(admin, 'SetBudget', {
    budget: {name, selector: {team}, period: 'PERIOD_MONTH',
      amount_nanos: String(amountNanos)},
    actor: 'node-example-test', reason: 'test',
  });
  const getBudget = (name) => unary(admin, 'GetBudget', {name});

  test('an allowed call is reported and its spend is visible', async () => {
    await setBudget('node-allowed', 'node-allowed', 10n * 1000000000n);
    const guard = new BursarGuard({address, routes: ROUTES, logger: quiet});
    try {
      const calls = [];
      const result = await guard.call('chat', {
        model: 'gpt-4.1-mini', inputTokens: 1000, maxOutputTokens: 500,
        labels: {team: 'node-allowed', user: 'alice'},
      }, recordingLlm(calls, {outputTokens: 200}));
      assert.equal(result.decision.allowed, true);
      assert.equal(result.decision.failedOpen, false);
      assert.ok(result.decision.reservationId);
      assert.deepEqual(calls, [['gpt-4.1-mini', 500]]);
      const expected = 1000n * MINI_INPUT_NANOS_PER_TOKEN +
          200n * MINI_OUTPUT_NANOS_PER_TOKEN;
      assert.equal(result.costNanos, expected);
      const budget = await getBudget('node-allowed');
      assert.equal(BigInt(budget.spent_nanos), expected);
      assert.equal(BigInt(budget.held_nanos), 0n);
    } finally {
      guard.close();
    }
  });

  test('a call over budget is denied and the LLM is never called', async () => {
    await setBudget('node-denied', 'node-denied', 1000n);  // $0.000001
    const guard = new BursarGuard({address, routes: ROUTES, logger: quiet});
    try {
      const calls = [];
      await assert.rejects(guard.call('chat', {
        model: 'gpt-4.1', inputTokens: 1000, maxOutputTokens: 500,
        labels: {team: 'node-denied'},
      }, recordingLlm(calls)), (error) => {
        assert.ok(error instanceof CallRefused);
        assert.equal(error.decision.allowed, false);
        assert.equal(error.decision.unavailableCode, null);
        assert.ok(error.decision.reasons.some(
            (r) => r.rule === 'budget:node-denied'), error.message);
        return true;
      });
      assert.deepEqual(calls, []);
      const budget = await getBudget('node-denied');
      assert.equal(BigInt(budget.spent_nanos), 0n);
      assert.equal(BigInt(budget.held_nanos), 0n);
    } finally {
      guard.close();
    }
  });

  test('a bad request is an error in every fail mode', async () => {
    const guard = new BursarGuard({address, routes: ROUTES, logger: quiet});
    try {
      for (const route of Object.keys(ROUTES)) {
        await assert.rejects(
            guard.check(route, {model: 'no-such-model', inputTokens: 10}),
            (error) => error instanceof BursarError &&
                error.code === grpc.status.INVALID_ARGUMENT);
      }
    } finally {
      guard.close();
    }
  });

  test('the example runs', async () => {
    const run = (server) => new Promise((resolve) => execFile(
        process.execPath, [path.join(__dirname, 'example.js'), '--server',
          server, '--team', 'node-example'],
        {env: process.env, timeout: 60000},
        (error, stdout, stderr) => resolve({code: error ? error.code : 0,
          stdout, stderr})));
    let r = await run(address);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /chat: allowed gpt-4\.1-mini /);
    assert.match(r.stdout, /batch-export: allowed gpt-4\.1 /);
    r = await run(await deadAddress());
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // A dead port is refused at once, or (on a loaded machine) the
    // deadline passes first: either way the route fails open.
    assert.match(r.stdout,
        /chat: bursar unavailable \((UNAVAILABLE|DEADLINE_EXCEEDED)\), failed open/);
    assert.match(r.stdout, /batch-export: refused: bursar unavailable/);
  });
});

describe('when bursar is unavailable', () => {
  async function checkFailModes(address) {
    const guard = new BursarGuard({address, routes: ROUTES, logger: quiet});
    try {
      const calls = [];
      const result = await guard.call('chat', {
        model: 'gpt-4.1', inputTokens: 1000, maxOutputTokens: 300,
        labels: {team: 'search'},
      }, recordingLlm(calls));
      assert.equal(result.decision.failedOpen, true);
      assert.equal(result.decision.unavailableCode, grpc.status.UNAVAILABLE);
      assert.deepEqual(calls, [['gpt-4.1', 300]]);
      assert.equal(result.costNanos, null);  // nothing to report against
      for (const route of ['batch-export', 'unlisted-route']) {
        await assert.rejects(
            guard.call(route, {model: 'gpt-4.1', inputTokens: 1000},
                recordingLlm(calls)),
            (error) => error instanceof CallRefused &&
                error.decision.failMode === FailMode.CLOSED);
      }
      assert.equal(calls.length, 1);
    } finally {
      guard.close();
    }
  }

  test('an unreachable port', async () => {
    await checkFailModes(await deadAddress());
  });

  test('a stopped server', async () => {
    const work = tempDir('bursar-node-stop-');
    const bursard = new Bursard(work);
    try {
      const address = await bursard.start();
      const guard = new BursarGuard({address, routes: ROUTES, logger: quiet});
      try {
        const d = await guard.check('chat', {model: 'gpt-4.1', inputTokens: 10});
        assert.equal(d.allowed, true);
        assert.equal(d.failedOpen, false);
      } finally {
        guard.close();
      }
      await bursard.stop();
      await checkFailModes(address);
    } finally {
      await bursard.stop();
      fs.rmSync(work, {recursive: true, force: true});
    }
  });
});

test('a slow server hits the deadline', async () => {
  const fake = await serveFake({hang: true});
  const client = new v1.Decision(fake.address,
      grpc.credentials.createInsecure());
  try {
    // Connected first, so the deadline is spent waiting for the answer.
    await new Promise((resolve, reject) => client.waitForReady(
        Date.now() + 10000, (error) => (error ? reject(error) : resolve())));
    const guard = new BursarGuard({client, routes: ROUTES,
      checkTimeoutMs: 2000, logger: quiet});
    const open = await guard.check('chat', {model: 'gpt-4.1', inputTokens: 10});
    // The deadline reached the server with the call (the grpc-timeout header
    // is rounded, hence the slack) ...
    assert.equal(fake.entered, true);
    assert.ok(fake.deadlineMs !== null && fake.deadlineMs < 2500,
        `server saw ${fake.deadlineMs} ms left`);
    // ... and ended it: the route's fail mode answered.
    assert.equal(open.unavailableCode, grpc.status.DEADLINE_EXCEEDED);
    assert.equal(open.failedOpen, true);
    const closed = await guard.check('batch-export',
        {model: 'gpt-4.1', inputTokens: 10});
    assert.equal(closed.allowed, false);
    assert.equal(closed.unavailableCode, grpc.status.DEADLINE_EXCEEDED);
  } finally {
    client.close();
    fake.stop();
  }
});

test('Report carries the outcome, usage and latency', async () => {
  const fake = await serveFake();
  let now = 1000;
  const guard = new BursarGuard({address: fake.address, routes: ROUTES,
    logger: quiet, clock: () => (now += 1500)});
  try {
    const result = await guard.call('chat', {model: 'gpt-4.1', inputTokens: 1000},
        recordingLlm([], {inputTokens: 1000, outputTokens: 42}));
    assert.equal(result.costNanos, 123n);
    await assert.rejects(guard.call('chat', {model: 'gpt-4.1', inputTokens: 1000},
        async () => { throw new Error('provider timed out'); }),
    /provider timed out/);
  } finally {
    guard.close();
    fake.stop();
  }
  assert.equal(fake.reports.length, 2);
  const [ok, failed] = fake.reports;
  assert.equal(ok.reservation_id, 'r-fake');
  assert.equal(ok.outcome, 'OUTCOME_SUCCESS');
  assert.equal(ok.usage.input_tokens, '1000');
  assert.equal(ok.usage.output_tokens, '42');
  assert.deepEqual(ok.latency, {seconds: '1', nanos: 500000000});
  assert.equal(failed.outcome, 'OUTCOME_FAILURE');
  assert.equal(failed.usage.output_tokens, '0');
  assert.deepEqual(failed.latency, {seconds: '1', nanos: 500000000});
});
