// Chained refresh-token rotation load for keyturn: node bench/load.mjs CONFIG.json
//
// CONFIG.json:
//   {"targets": ["http://127.0.0.1:8001", ...],  // base URLs
//    "tokens_file": "tokens.txt",                  // one refresh token a line, one per virtual user
//    "concurrency": 16,                            // virtual users (the first N tokens are used)
//    "duration": 20, "warmup": 3,                  // seconds
//    "tokens_out": "out.txt",                      // optional: each user's newest token, one a line
//    "timeout": 10,                                // optional: seconds before a request is an error
//    "idle_socket_timeout": 4}                     // optional: close sockets idle this long (below
//                                                  //   the server's keep-alive timeout, 5 s in uvicorn)
//
// Each virtual user owns a keep-alive Agent with one socket per target, sends
// POST /v1/auth/refresh {"refresh_token": <its newest token>}, and continues with the token
// from the 200 answer. Targets are chosen round-robin per request across all users (what a load
// balancer does), so a chain hops between instances. A non-2xx answer or a transport error ends
// that user's chain: its token may be stale, and sending it again would be a replay. One
// exception, as Node's documentation advises: ECONNRESET or EPIPE on a reused keep-alive socket
// (the server closed it as idle just as the request went out) is retried once on a new socket
// and counted in stale_socket_retries. The token is still the newest one; had the server taken
// the first attempt, the retry is a replay inside the grace window and gets the same answer.
//
// Stdout: one JSON object. Only requests that complete inside the measured window (after the
// warm-up, for `duration` seconds) count toward requests, req/s and the latency percentiles;
// non_2xx and transport_errors count the whole run; `chains[i].ok` counts every 200 of user i, warm-up and drain included, for checking against the
// database. Stderr gets "measure-start" and "measure-end" lines at the window's edges so a caller
// can sample CPU counters there.

import http from "node:http";
import { readFileSync, writeFileSync } from "node:fs";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const tokens = readFileSync(config.tokens_file, "utf8").split("\n").filter(Boolean);
const concurrency = config.concurrency;
if (tokens.length < concurrency) {
  throw new Error(`${concurrency} virtual users need ${concurrency} tokens, got ${tokens.length}`);
}
const targets = config.targets.map((u) => new URL(u));
const timeoutMs = (config.timeout ?? 10) * 1000;
const idleSocketMs = (config.idle_socket_timeout ?? 4) * 1000;

const t0 = performance.now();
const measureFrom = t0 + config.warmup * 1000;
const measureTo = measureFrom + config.duration * 1000;

const latencies = [];
const statuses = {};
const errors = {};
let staleSocketRetries = 0;
let nextTarget = 0;

function post(agent, target, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        method: "POST",
        path: "/v1/auth/refresh",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (err) => reject(Object.assign(err, { reusedSocket: req.reusedSocket })));
    req.end(body);
  });
}

async function send(agent, target, body) {
  try {
    return await post(agent, target, body);
  } catch (err) {
    if (!err.reusedSocket || !["ECONNRESET", "EPIPE"].includes(err.code)) throw err;
    staleSocketRetries++;
    return await post(agent, target, body);
  }
}

async function user(i) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1, timeout: idleSocketMs });
  const chain = { ok: 0, stopped: null };
  let token = tokens[i];
  while (performance.now() < measureTo) {
    const target = targets[nextTarget++ % targets.length];
    const start = performance.now();
    let res;
    try {
      res = await send(agent, target, JSON.stringify({ refresh_token: token }));
    } catch (err) {
      const key = err.code || err.message;
      errors[key] = (errors[key] || 0) + 1;
      chain.stopped = `transport: ${key}`;
      break;
    }
    const end = performance.now();
    if (end >= measureFrom && end <= measureTo) latencies.push(end - start);
    if (res.status < 200 || res.status > 299) {
      statuses[res.status] = (statuses[res.status] || 0) + 1;
      chain.stopped = `status ${res.status}: ${res.body.slice(0, 200)}`;
      break;
    }
    token = JSON.parse(res.body).refresh_token;
    chain.ok++;
  }
  agent.destroy();
  return { chain, token };
}

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

setTimeout(() => process.stderr.write("measure-start\n"), Math.max(0, measureFrom - performance.now()));
setTimeout(() => process.stderr.write("measure-end\n"), Math.max(0, measureTo - performance.now()));

const results = await Promise.all(Array.from({ length: concurrency }, (_, i) => user(i)));
if (config.tokens_out) writeFileSync(config.tokens_out, results.map((r) => r.token).join("\n") + "\n");

latencies.sort((a, b) => a - b);
const round = (ms) => (ms === null ? null : Math.round(ms * 1000) / 1000);
const cpu = process.cpuUsage();
process.stdout.write(
  JSON.stringify({
    targets: config.targets,
    routing: "round-robin per request",
    concurrency,
    duration_s: config.duration,
    warmup_s: config.warmup,
    requests: latencies.length,
    rps: Math.round((latencies.length / config.duration) * 10) / 10,
    latency_ms: {
      p50: round(percentile(latencies, 0.5)),
      p90: round(percentile(latencies, 0.9)),
      p99: round(percentile(latencies, 0.99)),
      max: round(latencies.at(-1) ?? null),
    },
    non_2xx: statuses,
    transport_errors: errors,
    stale_socket_retries: staleSocketRetries,
    chains: results.map((r) => r.chain),
    node_cpu_s: (cpu.user + cpu.system) / 1e6,
  }) + "\n",
);
