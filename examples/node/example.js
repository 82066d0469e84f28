'use strict';
// A small gateway loop guarded by Bursar: two routes, one failing open and
// one failing closed, a fake LLM standing in for the provider.
//
//   node examples/node/example.js [--server 127.0.0.1:8081] [--team search]
//
// Exit status 0 when every call was answered (allowed, denied or refused),
// 1 on a Bursar error.

const {BursarGuard, BursarError, CallRefused, FailMode, statusName} =
    require('./bursar_guard');

function argument(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

// Stands in for a provider call: answers with half the allowed output tokens.
function fakeLlm(promptTokens) {
  return async (model, maxOutputTokens) => {
    const outputTokens = Math.max(1, Math.floor((maxOutputTokens || 256) / 2));
    return {
      response: `[${model}] answer in ${outputTokens} tokens`,
      usage: {inputTokens: promptTokens, outputTokens},
    };
  };
}

function usd(nanos) {
  const whole = nanos / 1000000000n;
  const fraction = String(nanos % 1000000000n).padStart(9, '0');
  return `$${whole}.${fraction}`;
}

async function main() {
  const server = argument('server', '127.0.0.1:8081');
  const team = argument('team', 'search');
  const guard = new BursarGuard({
    address: server,
    routes: {'chat': FailMode.OPEN, 'batch-export': FailMode.CLOSED},
    logger: {warn: () => {}, error: console.error},
  });
  const calls = [
    ['chat', {model: 'gpt-4.1-mini', inputTokens: 800, maxOutputTokens: 400,
      labels: {team, user: 'alice'}}],
    ['batch-export', {model: 'gpt-4.1', inputTokens: 2000,
      maxOutputTokens: 1000, labels: {team}}],
  ];
  try {
    for (const [route, request] of calls) {
      let result;
      try {
        result = await guard.call(route, request, fakeLlm(request.inputTokens));
      } catch (error) {
        if (error instanceof CallRefused) {
          console.log(`${route}: refused: ${error.message}`);
          continue;
        }
        if (error instanceof BursarError) {
          console.error(`${route}: ${error.message}`);
          return 1;
        }
        throw error;
      }
      const d = result.decision;
      if (d.failedOpen) {
        console.log(`${route}: bursar unavailable ` +
            `(${statusName(d.unavailableCode)}), failed open: ${result.response}`);
      } else {
        const cost = result.costNanos === null ? 'unknown' : usd(result.costNanos);
        console.log(`${route}: allowed ${d.model} max_output_tokens=` +
            `${d.maxOutputTokens} reservation=${d.reservationId} cost=${cost}: ` +
            `${result.response}`);
      }
    }
    return 0;
  } finally {
    guard.close();
  }
}

main().then((code) => process.exit(code), (error) => {
  console.error(error);
  process.exit(1);
});
