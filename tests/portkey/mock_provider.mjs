// A mock OpenAI-compatible provider on loopback for the Portkey e2e test: it
// answers POST .../chat/completions with a fixed completion and usage, and
// records every request it saw (path, headers, parsed JSON body).

import http from 'node:http';

// Usage the mock reports for every call (the test computes costs from it).
export const MOCK_USAGE = { prompt_tokens: 50, completion_tokens: 20 };

export async function startMockProvider() {
  const seen = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      let json = null;
      try { json = JSON.parse(body); } catch { /* recorded as null */ }
      seen.push({ method: req.method, path: req.url, headers: req.headers, json });
      if (req.method !== 'POST' || !req.url.endsWith('/chat/completions')) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: `mock: no route ${req.url}` } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        id: `chatcmpl-mock-${seen.length}`,
        object: 'chat.completion',
        created: 1767225600,
        model: json?.model ?? 'unknown',
        choices: [{
          index: 0,
          message: { role: 'assistant', content: 'Hello from the mock.' },
          finish_reason: 'stop',
        }],
        usage: {
          ...MOCK_USAGE,
          total_tokens: MOCK_USAGE.prompt_tokens + MOCK_USAGE.completion_tokens,
        },
      }));
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: server.address().port,
    seen,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
