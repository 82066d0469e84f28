// End to end: Portkey's open-source gateway -> a mock OpenAI-compatible
// provider, with Bursar (a real bursard) as the gateway's webhook guardrail.
// Run by run_e2e.sh (ctest test portkey_e2e):
//   node e2e_test.mjs BURSARD BURSARCTL NODE_MODULES WORK_DIR POLICY_DIR
// Everything listens on or is called at 127.0.0.1 only. Exits 1 on the
// first failed step, printing the server logs.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { MOCK_USAGE, startMockProvider } from './mock_provider.mjs';

const [BURSARD, BURSARCTL, NODE_MODULES, WORK_DIR, POLICY_DIR] =
    process.argv.slice(2);
if (!POLICY_DIR) {
  console.error('usage: node e2e_test.mjs BURSARD BURSARCTL NODE_MODULES WORK_DIR POLICY_DIR');
  process.exit(2);
}
const GATEWAY = path.join(NODE_MODULES, '@portkey-ai/gateway/build/start-server.js');

// Every flag this test passes to bursard, in one place.
function bursardFlags({ dataDir, readyFile }) {
  return [
    '--listen=127.0.0.1:0',
    '--http_listen=127.0.0.1:0',
    `--ready_file=${readyFile}`,
    `--data_dir=${dataDir}`,
    `--policy_dir=${POLICY_DIR}`,
    '--policy_source=dir',
    '--sync=none',
    '--insecure',
  ];
}

// Prices of the test policy (tests/portkey/policy), nano-USD per token.
const PRICE = {
  'gpt-4.1': { input: 2000, output: 8000 },
  'gpt-4.1-mini': { input: 400, output: 1600 },
};
const costOfMockUsage = (model) =>
  MOCK_USAGE.prompt_tokens * PRICE[model].input +
  MOCK_USAGE.completion_tokens * PRICE[model].output;

const children = [];
// Log files of the processes started, printed on failure.
const logs = [];
process.on('exit', () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function startProcess(name, command, args) {
  const logPath = path.join(WORK_DIR, `${name}.log`);
  const log = fs.openSync(logPath, 'a');
  const child = spawn(command, args, { stdio: ['ignore', log, log] });
  children.push(child);
  logs.push(logPath);
  child.logPath = logPath;
  return child;
}

async function waitFor(what, child, probe, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before it served`);
    }
    const value = await probe();
    if (value) return value;
    await sleep(50);
  }
  throw new Error(`${what} did not serve within ${timeoutMs} ms`);
}

async function stopProcess(child) {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  return exited;
}

async function startBursard() {
  const readyFile = path.join(WORK_DIR, 'bursard.ready');
  fs.rmSync(readyFile, { force: true });
  const child = startProcess('bursard', BURSARD, bursardFlags({
    dataDir: path.join(WORK_DIR, 'data'),
    readyFile,
  }));
  const ready = await waitFor('bursard', child, async () => {
    if (!fs.existsSync(readyFile)) return null;
    const lines = fs.readFileSync(readyFile, 'utf8').trim().split('\n');
    const http = lines.find((line) => line.startsWith('http='));
    return http ? { grpc: lines[0], http: http.slice('http='.length) } : null;
  });
  assert.match(ready.http, /^127\.0\.0\.1:\d+$/);
  return { child, ...ready };
}

function freeLoopbackPort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Portkey listens on every interface at the port it is given (there is no
// host flag); the test only ever talks to it on 127.0.0.1.
async function startGateway() {
  for (let attempt = 1; ; attempt++) {
    const port = await freeLoopbackPort();
    const child = startProcess('gateway', process.execPath,
        [GATEWAY, `--port=${port}`, '--headless']);
    try {
      await waitFor('the Portkey gateway', child, async () => {
        try {
          const res = await fetch(`http://127.0.0.1:${port}/`);
          return res.ok && (await res.text()).includes('AI Gateway');
        } catch {
          return false;
        }
      }, 60000);
      return { child, port };
    } catch (error) {
      await stopProcess(child);
      // Another process may have taken the port between our probe and the
      // gateway's bind: try a new one.
      if (attempt >= 3) throw error;
    }
  }
}

function bursarctl(server, ...args) {
  return execFileSync(BURSARCTL,
      [`--server=${server}`, '--actor=portkey-e2e', ...args],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function budget(server, name) {
  const answer = JSON.parse(bursarctl(server, '--json', 'budget', 'get', name));
  const totals = { spent: 0, held: 0 };
  const visit = (value) => {
    if (value === null || typeof value !== 'object') return;
    for (const [key, inner] of Object.entries(value)) {
      if (key === 'spent_nanos' || key === 'spentNanos') totals.spent = Number(inner);
      else if (key === 'held_nanos' || key === 'heldNanos') totals.held = Number(inner);
      else visit(inner);
    }
  };
  visit(answer);
  return totals;
}

let passed = 0;
let failed = 0;

async function step(name, body) {
  try {
    await body();
    passed++;
    console.log(`ok - ${name}`);
  } catch (error) {
    failed++;
    console.log(`not ok - ${name}\n  ${String(error.stack || error).replaceAll('\n', '\n  ')}`);
    throw error;
  }
}

async function main() {
  fs.mkdirSync(WORK_DIR, { recursive: true });
  const mock = await startMockProvider();
  const bursar = await startBursard();
  const gateway = await startGateway();
  const webhookURL = `http://${bursar.http}/v1/portkey/webhook`;

  bursarctl(bursar.grpc, 'budget', 'set', 'team-search', '--amount', '10',
      '--period', 'none', '--selector', 'team=search');
  // $0.0012: gpt-4.1 with 1,000 in / 1,000 out ($0.01) does not fit, nor
  // gpt-4.1-mini ($0.002); gpt-4.1-mini capped to 500 output tokens does.
  bursarctl(bursar.grpc, 'budget', 'set', 'team-frugal', '--amount', '0.0012',
      '--period', 'none', '--selector', 'team=frugal');
  // $0.0001: not even gpt-4.1-mini's 1,000 input tokens fit.
  bursarctl(bursar.grpc, 'budget', 'set', 'team-broke', '--amount', '0.0001',
      '--period', 'none', '--selector', 'team=broke');

  // The gateway config a platform team would send (or store) for Bursar.
  const config = ({ failOnError = true } = {}) => ({
    provider: 'openai',
    api_key: 'sk-mock',
    custom_host: `http://127.0.0.1:${mock.port}/v1`,
    input_guardrails: [{
      deny: true,
      'default.webhook': { webhookURL, failOnError, timeout: 3000 },
    }],
    output_guardrails: [{
      'default.webhook': { webhookURL, timeout: 3000 },
    }],
  });
  const chat = async (metadata, body, options) => {
    const res = await fetch(`http://127.0.0.1:${gateway.port}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-portkey-config': JSON.stringify(config(options)),
        'x-portkey-metadata': JSON.stringify(metadata),
      },
      body: JSON.stringify(body),
    });
    return { status: res.status, text: await res.text() };
  };
  const hello = (model, maxTokens) => ({
    model,
    max_tokens: maxTokens,
    messages: [{ role: 'user', content: 'Say hello in five words.' }],
  });

  await step('an allowed call reaches the provider unchanged', async () => {
    const res = await chat({ request_id: 'e2e-allowed', team: 'search', _user: 'ada' },
        hello('gpt-4.1', 100));
    assert.equal(res.status, 200, res.text);
    assert.equal(JSON.parse(res.text).choices[0].message.content, 'Hello from the mock.');
    assert.equal(mock.seen.length, 1);
    assert.equal(mock.seen[0].json.model, 'gpt-4.1');
    assert.equal(mock.seen[0].json.max_tokens, 100);
  });

  await step('the after-hook reported the usage (bursarctl --json budget get)', async () => {
    const search = budget(bursar.grpc, 'team-search');
    assert.equal(search.spent, costOfMockUsage('gpt-4.1'));  // 260,000 nanos
    assert.equal(search.held, 0);
  });

  await step('a call over budget is downgraded and capped', async () => {
    const res = await chat({ request_id: 'e2e-frugal', team: 'frugal', input_tokens: 1000 },
        hello('gpt-4.1', 1000));
    assert.equal(res.status, 200, res.text);
    assert.equal(mock.seen.length, 2);
    assert.equal(mock.seen[1].json.model, 'gpt-4.1-mini');
    assert.equal(mock.seen[1].json.max_tokens, 500);
    const frugal = budget(bursar.grpc, 'team-frugal');
    assert.equal(frugal.spent, costOfMockUsage('gpt-4.1-mini'));  // 52,000
    assert.equal(frugal.held, 0);
  });

  await step('a call that no step can fit is denied; the provider never sees it', async () => {
    const res = await chat({ request_id: 'e2e-broke', team: 'broke', input_tokens: 1000 },
        hello('gpt-4.1', 1000));
    assert.equal(res.status, 446, res.text);
    assert.match(res.text, /budget:team-broke/);
    assert.equal(mock.seen.length, 2);
    assert.deepEqual(budget(bursar.grpc, 'team-broke'), { spent: 0, held: 0 });
  });

  await step('a call without metadata.request_id is refused with the reason', async () => {
    const res = await chat({ team: 'search' }, hello('gpt-4.1', 10));
    assert.equal(res.status, 446, res.text);
    assert.match(res.text, /metadata\.request_id/);
    assert.equal(mock.seen.length, 2);
  });

  const exitCode = await stopProcess(bursar.child);
  await step('bursard stops cleanly (HTTP port first)', async () => {
    assert.equal(exitCode, 0);
  });

  await step('fail-closed: with Bursar down the gateway denies', async () => {
    const res = await chat({ request_id: 'e2e-down', team: 'search' }, hello('gpt-4.1', 10));
    assert.equal(res.status, 446, res.text);
    assert.equal(mock.seen.length, 2);
  });

  await step('fail-open (failOnError: false): with Bursar down the call goes ahead', async () => {
    const res = await chat({ request_id: 'e2e-open', team: 'search' }, hello('gpt-4.1', 10),
        { failOnError: false });
    assert.equal(res.status, 200, res.text);
    assert.equal(mock.seen.length, 3);
    assert.equal(mock.seen[2].json.model, 'gpt-4.1');
  });

  for (const request of mock.seen) {
    assert.equal(request.path, '/v1/chat/completions');
  }
  await stopProcess(gateway.child);
  await mock.close();
}

try {
  await main();
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(0);
} catch (error) {
  if (failed === 0) console.log(`not ok - setup\n  ${error.stack || error}`);
  for (const log of logs) {
    console.log(`--- ${log}`);
    try { console.log(fs.readFileSync(log, 'utf8').slice(-6000)); } catch { /* none */ }
  }
  console.log(`${passed} passed, ${Math.max(failed, 1)} failed`);
  process.exit(1);
}
