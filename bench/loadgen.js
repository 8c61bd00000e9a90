#!/usr/bin/env node
// WebSocket JSON-RPC load generator for camera-service (and bench/bare_server.py).
//
// Opens N connections (paced: a connect-concurrency limit plus a connect-rate cap,
// so the server's accept backlog is never flooded), authenticates each one with
// `authenticate` + a JWT and checks the result, then runs one mode:
//
//   open    fixed total request rate, spread round-robin over the connections. Every
//           request has a scheduled send time (t0 + k/rate) and its latency is measured
//           from that SCHEDULED time, not from when it actually went out, so a stall
//           (in the server or here) is charged to every request it delayed
//           (no coordinated omission). Methods alternate per connection (50/50 mix).
//   closed  each connection keeps --depth requests (default 1) in flight: the next
//           ping goes out as soon as the previous response arrives. Reports throughput.
//   idle    holds the connections for --duration s, then sends one ping on every
//           connection (spread over --idle-spread-ms) and requires every one to answer.
//   probe   one connection: authenticate, then each of --methods once. Exit 0 if all OK.
//
// Errors are: any JSON-RPC error response, an unexpected result, a timeout
// (--timeout ms after the scheduled time), a connection closing or failing, and any
// failed connection set-up.
//
// Output: one JSON object on stdout. Progress lines (JSON, one per line) on stderr,
// including {"event":"measure_start"} / {"event":"measure_end"} which bench/run.py
// uses to sample the server only during the measured window.
//
// The generator reports its own CPU use (process.cpuUsage() over wall time, in % of
// one core) and event-loop delay, so a run can tell whether the generator itself was
// the bottleneck. Run it pinned to its own core (bench/run.py uses `taskset -c 0`).
'use strict';

const WebSocket = require('ws');
const { performance, monitorEventLoopDelay } = require('perf_hooks');

// ---------------------------------------------------------------- arguments
const DEFAULTS = {
  url: 'ws://127.0.0.1:8002/ws',
  token: '',
  mode: 'open',
  connections: 100,
  rate: 1000,
  duration: 10,
  warmup: 0,
  'connect-concurrency': 50,
  'connect-rate': 1000,
  timeout: 5000,
  methods: 'ping,get_server_info',
  depth: 1,
  'idle-spread-ms': 1000,
  'drain-ms': 0,
  'ws-ping-ms': 0,
  quiet: false,
};

function parseArgs(argv) {
  const out = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      process.stdout.write(
        'usage: node loadgen.js --url ws://host:port/ws --token JWT --mode open|closed|idle|probe\n' +
          '  [--connections N] [--rate R] [--duration S] [--warmup S] [--timeout MS]\n' +
          '  [--connect-concurrency C] [--connect-rate PER_S] [--methods a,b] [--depth D]\n' +
          '  [--idle-spread-ms MS] [--quiet]\n' +
          'defaults: ' + JSON.stringify(DEFAULTS) + '\n'
      );
      process.exit(0);
    }
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    let key = a.slice(2);
    let val;
    const eq = key.indexOf('=');
    if (eq >= 0) {
      val = key.slice(eq + 1);
      key = key.slice(0, eq);
    }
    if (!(key in DEFAULTS)) throw new Error(`unknown option --${key}`);
    if (typeof DEFAULTS[key] === 'boolean') {
      out[key] = val === undefined ? true : val !== 'false';
      continue;
    }
    if (val === undefined) val = argv[++i];
    if (val === undefined) throw new Error(`--${key} needs a value`);
    out[key] = typeof DEFAULTS[key] === 'number' ? Number(val) : val;
    if (typeof DEFAULTS[key] === 'number' && !Number.isFinite(out[key])) {
      throw new Error(`--${key} must be a number`);
    }
  }
  if (!['open', 'closed', 'idle', 'probe'].includes(out.mode)) {
    throw new Error(`--mode must be open, closed, idle or probe`);
  }
  out.methodList = String(out.methods)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (out.methodList.length === 0) throw new Error('--methods is empty');
  if (out.mode === 'closed') out.methodList = ['ping'];
  if (out.mode === 'probe') out.connections = 1;
  return out;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`loadgen: ${e.message}\n`);
  process.exit(2);
}

function progress(obj) {
  if (!opts.quiet || obj.event === 'measure_start' || obj.event === 'measure_end') {
    process.stderr.write(JSON.stringify({ t: +(performance.now() / 1000).toFixed(3), ...obj }) + '\n');
  }
}

// ---------------------------------------------------------------- statistics
class Samples {
  constructor() {
    this.buf = new Float64Array(1024);
    this.n = 0;
  }
  add(v) {
    if (this.n === this.buf.length) {
      const nb = new Float64Array(this.buf.length * 2);
      nb.set(this.buf);
      this.buf = nb;
    }
    this.buf[this.n++] = v;
  }
  summary() {
    const n = this.n;
    if (n === 0) return { count: 0 };
    const a = this.buf.slice(0, n).sort();
    let sum = 0;
    for (let i = 0; i < n; i++) sum += a[i];
    const pct = (p) => a[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))];
    const r = (v) => Math.round(v * 1000) / 1000;
    return {
      count: n,
      min: r(a[0]),
      mean: r(sum / n),
      p50: r(pct(50)),
      p90: r(pct(90)),
      p95: r(pct(95)),
      p99: r(pct(99)),
      p999: r(pct(99.9)),
      max: r(a[n - 1]),
    };
  }
}

const errors = {}; // kind -> count
const errorSamples = [];
function recordError(kind, detail) {
  errors[kind] = (errors[kind] || 0) + 1;
  if (errorSamples.length < 20) errorSamples.push({ kind, detail: String(detail).slice(0, 300) });
}
const setupErrors = {};
const setupErrorSamples = [];
function recordSetupError(kind, detail) {
  setupErrors[kind] = (setupErrors[kind] || 0) + 1;
  if (setupErrorSamples.length < 20) setupErrorSamples.push({ kind, detail: String(detail).slice(0, 300) });
}

const latency = new Samples(); // from scheduled send time (headline)
const serviceTime = new Samples(); // from actual send time
const sendLag = new Samples(); // actual send - scheduled send (generator lateness)
const byMethod = {}; // method -> Samples (latency from scheduled)
const connectMs = new Samples();
const authMs = new Samples();

let measuring = false;
let measureStart = 0;
let measureEnd = 0;
let sentTotal = 0;
let sentMeasured = 0;
let completedTotal = 0;
let completedMeasured = 0; // for closed: completions inside the window
let finished = false;
let unexpectedMessages = 0;
let serverNotifications = 0;
let keepalivePings = 0;

// ---------------------------------------------------------------- connections
const conns = []; // ready (authenticated) connections

class Conn {
  constructor(index) {
    this.index = index;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map(); // id -> {sched, sent, method, measured}
    this.ready = false;
    this.closed = false;
    this.sent = 0;
    this.onReply = null; // closed-loop hook
  }

  send(method, sched, measured) {
    const id = this.nextId++;
    const now = performance.now();
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) {
      recordError('send_on_closed', `connection ${this.index} is not open`);
      return false;
    }
    const msg = method === 'authenticate'
      ? { jsonrpc: '2.0', method, params: { auth_token: opts.token }, id }
      : { jsonrpc: '2.0', method, id };
    this.pending.set(id, { sched, sent: now, method, measured });
    this.sent++;
    sentTotal++;
    if (measured) sentMeasured++;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  handle(data) {
    const now = performance.now();
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch (e) {
      recordError('bad_json', data.toString().slice(0, 200));
      return;
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
      recordError('bad_message', JSON.stringify(msg).slice(0, 200));
      return;
    }
    if (msg.id === undefined || msg.id === null) {
      if (typeof msg.method === 'string') serverNotifications++;
      else {
        unexpectedMessages++;
        recordError('null_id_response', JSON.stringify(msg).slice(0, 300));
      }
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) {
      unexpectedMessages++;
      recordError('unknown_id', JSON.stringify(msg).slice(0, 200));
      return;
    }
    this.pending.delete(msg.id);
    completedTotal++;
    let ok = true;
    if (msg.error !== undefined) {
      ok = false;
      recordError(`rpc_${msg.error && msg.error.code}`, `${p.method}: ${JSON.stringify(msg.error)}`);
    } else if (!resultOk(p.method, msg.result)) {
      ok = false;
      recordError('bad_result', `${p.method}: ${JSON.stringify(msg.result).slice(0, 200)}`);
    }
    if (this.authWaiter && p.method === 'authenticate') {
      const w = this.authWaiter;
      this.authWaiter = null;
      w(ok, msg, now - p.sent);
      return;
    }
    const inWindow = opts.mode === 'closed' ? measuring && now <= measureEnd : p.measured;
    if (ok && inWindow) {
      completedMeasured++;
      latency.add(now - p.sched);
      serviceTime.add(now - p.sent);
      sendLag.add(p.sent - p.sched);
      (byMethod[p.method] || (byMethod[p.method] = new Samples())).add(now - p.sched);
    }
    if (this.onReply) this.onReply(this, ok);
  }

  failPending(kind, detail) {
    for (const [, p] of this.pending) {
      if (p.method === 'authenticate') continue;
      recordError(kind, `${p.method}: ${detail}`);
    }
    this.pending.clear();
  }
}

function resultOk(method, result) {
  switch (method) {
    case 'ping':
      return result === 'pong';
    case 'authenticate':
      return result !== null && typeof result === 'object' && result.authenticated === true;
    default:
      return result !== undefined && result !== null;
  }
}

function openOne(index) {
  return new Promise((resolve) => {
    const c = new Conn(index);
    const t0 = performance.now();
    let settled = false;
    const settle = (ok, kind, detail) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!ok) {
        recordSetupError(kind, detail);
        c.closed = true;
        try {
          c.ws.terminate();
        } catch (_) {
          /* ignore */
        }
      }
      resolve(ok ? c : null);
    };
    const timer = setTimeout(() => settle(false, 'setup_timeout', `connection ${index}`), Math.max(opts.timeout, 10000));
    let ws;
    try {
      ws = new WebSocket(opts.url, {
        perMessageDeflate: false,
        handshakeTimeout: Math.max(opts.timeout, 10000),
      });
    } catch (e) {
      settle(false, 'connect_error', e.message);
      return;
    }
    c.ws = ws;
    ws.on('error', (e) => {
      if (!c.ready) settle(false, 'connect_error', e.message);
      else if (!finished) recordError('socket_error', e.message);
    });
    ws.on('unexpected-response', (req, res) => {
      settle(false, `http_${res.statusCode}`, `upgrade refused: HTTP ${res.statusCode}`);
    });
    ws.on('ping', () => {
      keepalivePings++;
    });
    ws.on('close', (code, reason) => {
      c.closed = true;
      if (!c.ready) {
        settle(false, 'closed_during_setup', `close ${code} ${reason}`);
        return;
      }
      if (!finished) {
        recordError('connection_closed', `connection ${index}: close ${code} ${reason}`);
        c.failPending('closed', `connection closed (${code})`);
      }
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        recordError('binary_frame', `connection ${index}`);
        return;
      }
      c.handle(data);
    });
    ws.on('open', () => {
      const tOpen = performance.now();
      connectMs.add(tOpen - t0);
      c.authWaiter = (ok, msg, ms) => {
        if (!ok) {
          settle(false, 'auth_failed', JSON.stringify(msg).slice(0, 300));
          return;
        }
        authMs.add(ms);
        c.ready = true;
        settle(true);
      };
      c.send('authenticate', tOpen, false);
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

async function openAll(n) {
  const t0 = performance.now();
  const perConnMs = opts['connect-rate'] > 0 ? 1000 / opts['connect-rate'] : 0;
  let inflight = 0;
  let wake = null;
  const all = [];
  let lastReport = t0;
  for (let k = 0; k < n; k++) {
    while (inflight >= opts['connect-concurrency']) {
      await new Promise((r) => (wake = r));
    }
    const due = t0 + k * perConnMs;
    const now = performance.now();
    if (due > now) await sleep(due - now);
    inflight++;
    all.push(
      openOne(k).then((c) => {
        inflight--;
        if (c) conns.push(c);
        if (wake) {
          const w = wake;
          wake = null;
          w();
        }
        return c;
      })
    );
    if (performance.now() - lastReport > 1000) {
      lastReport = performance.now();
      progress({ event: 'connecting', started: k + 1, ready: conns.length });
    }
  }
  await Promise.all(all);
  return (performance.now() - t0) / 1000;
}

// ---------------------------------------------------------------- timeouts
function sweepTimeouts() {
  const now = performance.now();
  for (const c of conns) {
    if (c.pending.size === 0) continue;
    for (const [id, p] of c.pending) {
      if (now - p.sched > opts.timeout) {
        c.pending.delete(id);
        recordError('timeout', `${p.method} on connection ${c.index} after ${opts.timeout} ms`);
        if (c.onReply) c.onReply(c, false);
      }
    }
  }
}

function pendingCount() {
  let n = 0;
  for (const c of conns) n += c.pending.size;
  return n;
}

async function drain(limitMs) {
  const end = performance.now() + limitMs;
  while (pendingCount() > 0 && performance.now() < end) {
    await sleep(5);
    sweepTimeouts();
  }
  sweepTimeouts();
}

let cpuAtMeasureStart = null;
let wallAtMeasureStart = 0;
let cpuMeasured = null;
let wallMeasured = 0;

function startMeasure() {
  measuring = true;
  measureStart = performance.now();
  cpuAtMeasureStart = process.cpuUsage();
  wallAtMeasureStart = measureStart;
  progress({ event: 'measure_start' });
}

function endMeasure() {
  measureEnd = Math.min(measureEnd || Infinity, performance.now());
  measuring = false;
  if (cpuAtMeasureStart) {
    cpuMeasured = process.cpuUsage(cpuAtMeasureStart);
    wallMeasured = performance.now() - wallAtMeasureStart;
  }
  progress({ event: 'measure_end' });
}

// ---------------------------------------------------------------- modes
async function runOpen() {
  const n = conns.length;
  const interval = 1000 / opts.rate;
  const total = Math.floor(opts.rate * (opts.warmup + opts.duration));
  const warmupCount = Math.round(opts.rate * opts.warmup); // requests k < warmupCount are not measured
  const t0 = performance.now() + 20;
  let k = 0;
  let started = false;
  const sweeper = setInterval(sweepTimeouts, 100);
  await new Promise((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (k < total) {
        const sched = t0 + k * interval;
        if (sched > now) break;
        const measured = k >= warmupCount;
        if (measured && !started) {
          started = true;
          startMeasure();
          measureStart = sched;
        }
        const c = conns[k % n];
        c.send(opts.methodList[(c.sent + c.index) % opts.methodList.length], sched, measured);
        k++;
      }
      if (k >= total) {
        resolve();
        return;
      }
      setTimeout(tick, Math.max(0, t0 + k * interval - performance.now()));
    };
    setTimeout(tick, Math.max(0, t0 - performance.now()));
  });
  measureEnd = t0 + total * interval;
  await drain(opts.timeout + 500);
  clearInterval(sweeper);
  endMeasure();
  return { window_s: (measureEnd - measureStart) / 1000, scheduled: total };
}

async function runClosed() {
  const depth = Math.max(1, opts.depth);
  let stopping = false;
  const t0 = performance.now();
  const sweeper = setInterval(sweepTimeouts, 100);
  const onReply = (c) => {
    if (stopping || c.closed) return;
    const now = performance.now();
    c.send('ping', now, true);
  };
  for (const c of conns) {
    c.onReply = onReply;
    for (let d = 0; d < depth; d++) c.send('ping', performance.now(), true);
  }
  if (opts.warmup > 0) await sleep(opts.warmup * 1000 - (performance.now() - t0));
  startMeasure();
  measureEnd = measureStart + opts.duration * 1000;
  await sleep(measureEnd - performance.now());
  stopping = true;
  endMeasure();
  await drain(opts.timeout + 500);
  clearInterval(sweeper);
  return { window_s: (measureEnd - measureStart) / 1000 };
}

async function runIdle() {
  const holdEnd = performance.now() + opts.duration * 1000;
  progress({ event: 'holding', connections: conns.length, seconds: opts.duration });
  let lastReport = performance.now();
  while (performance.now() < holdEnd) {
    await sleep(Math.min(1000, holdEnd - performance.now()));
    if (performance.now() - lastReport >= 5000) {
      lastReport = performance.now();
      progress({ event: 'holding', open: conns.filter((c) => !c.closed).length });
    }
  }
  const stillOpen = conns.filter((c) => !c.closed).length;
  // One ping on every connection, spread over idle-spread-ms, latency from schedule.
  const n = conns.length;
  const spread = Math.max(0, opts['idle-spread-ms']);
  const t0 = performance.now() + 5;
  startMeasure();
  measureStart = t0;
  const sweeper = setInterval(sweepTimeouts, 100);
  let k = 0;
  await new Promise((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (k < n) {
        const sched = t0 + (n > 1 ? (k * spread) / n : 0);
        if (sched > now) break;
        conns[k].send('ping', sched, true);
        k++;
      }
      if (k >= n) return resolve();
      setTimeout(tick, Math.max(0, t0 + (k * spread) / n - performance.now()));
    };
    tick();
  });
  measureEnd = t0 + spread;
  await drain(opts.timeout + 500);
  clearInterval(sweeper);
  endMeasure();
  return { held_s: opts.duration, open_after_hold: stillOpen, pinged: n, window_s: (measureEnd - measureStart) / 1000 };
}

async function runProbe() {
  const c = conns[0];
  const results = {};
  startMeasure();
  for (const m of opts.methodList) {
    const errBefore = Object.values(errors).reduce((a, b) => a + b, 0);
    const doneBefore = completedTotal;
    c.send(m, performance.now(), true);
    while (c.pending.size > 0 && !c.closed) {
      await sleep(5);
      sweepTimeouts();
    }
    const errAfter = Object.values(errors).reduce((a, b) => a + b, 0);
    results[m] = completedTotal > doneBefore && errAfter === errBefore ? 'ok' : 'error';
  }
  endMeasure();
  return { methods: results, window_s: (measureEnd - measureStart) / 1000 };
}

// ---------------------------------------------------------------- main
async function main() {
  const wallStart = performance.now();
  const cpuStart = process.cpuUsage();
  progress({ event: 'start', mode: opts.mode, url: opts.url, connections: opts.connections });

  const setupSeconds = await openAll(opts.connections);
  const cpuAfterSetup = process.cpuUsage();
  const wallAfterSetup = performance.now();
  const setupFailed = opts.connections - conns.length;
  progress({ event: 'ready', connections: conns.length, failed: setupFailed, seconds: +setupSeconds.toFixed(3) });

  const ELD_RES_MS = 2;
  const eld = monitorEventLoopDelay({ resolution: ELD_RES_MS });
  let runInfo = {};
  if (conns.length > 0) {
    eld.enable();
    if (opts.mode === 'open') runInfo = await runOpen();
    else if (opts.mode === 'closed') runInfo = await runClosed();
    else if (opts.mode === 'idle') runInfo = await runIdle();
    else runInfo = await runProbe();
    eld.disable();
  }
  const cpuRun = process.cpuUsage(cpuAfterSetup);
  const wallRun = performance.now() - wallAfterSetup;
  const cpuSetup = process.cpuUsage(cpuStart);
  cpuSetup.user -= cpuRun.user;
  cpuSetup.system -= cpuRun.system;
  const wallSetup = wallAfterSetup - wallStart;
  finished = true;

  const errorsTotal = Object.values(errors).reduce((a, b) => a + b, 0);
  const setupErrorsTotal = Object.values(setupErrors).reduce((a, b) => a + b, 0);
  const windowS = runInfo.window_s || 0;
  const pctCore = (u, wallMs) => (wallMs > 0 ? Math.round(((u.user + u.system) / 1000 / wallMs) * 1000) / 10 : 0);
  const ns2ms = (v) => Math.round((v / 1e6) * 1000) / 1000;
  let rssMb = null;
  try {
    rssMb = Math.round((process.memoryUsage.rss() / 1048576) * 10) / 10;
  } catch (_) {
    /* EMFILE: /proc cannot be opened when the fd limit is exhausted */
  }
  const methodStats = {};
  for (const [m, s] of Object.entries(byMethod)) methodStats[m] = s.summary();

  const report = {
    mode: opts.mode,
    url: opts.url,
    options: {
      connections: opts.connections,
      rate: opts.mode === 'open' ? opts.rate : null,
      duration_s: opts.duration,
      warmup_s: opts.warmup,
      timeout_ms: opts.timeout,
      methods: opts.methodList,
      depth: opts.mode === 'closed' ? opts.depth : null,
      connect_concurrency: opts['connect-concurrency'],
      connect_rate: opts['connect-rate'],
    },
    setup: {
      requested: opts.connections,
      ready: conns.length,
      failed: setupFailed,
      errors: setupErrors,
      error_samples: setupErrorSamples,
      seconds: Math.round(setupSeconds * 1000) / 1000,
      connect_ms: connectMs.summary(),
      auth_ms: authMs.summary(),
    },
    run: {
      ...runInfo,
      sent: sentTotal,
      sent_measured: sentMeasured,
      completed: completedTotal,
      completed_measured: completedMeasured,
      errors_total: errorsTotal,
      errors,
      error_samples: errorSamples,
      unexpected_messages: unexpectedMessages,
      server_notifications: serverNotifications,
      keepalive_pings_received: keepalivePings,
      throughput_rps: windowS > 0 ? Math.round((completedMeasured / windowS) * 10) / 10 : 0,
      latency_ms: latency.summary(),
      service_time_ms: serviceTime.summary(),
      send_lag_ms: sendLag.summary(),
      by_method_latency_ms: methodStats,
    },
    generator: {
      // % of one core over the measured window (open/closed: the load; idle: the final pings)
      cpu_pct_of_one_core: cpuMeasured ? pctCore(cpuMeasured, wallMeasured) : pctCore(cpuRun, wallRun),
      // % of one core over the whole run phase (warm-up, the idle hold and draining included)
      cpu_pct_of_one_core_run: pctCore(cpuRun, wallRun),
      cpu_pct_of_one_core_setup: pctCore(cpuSetup, wallSetup),
      cpu_user_s: Math.round(cpuRun.user / 1e3) / 1e3,
      cpu_system_s: Math.round(cpuRun.system / 1e3) / 1e3,
      run_wall_s: Math.round(wallRun) / 1000,
      event_loop_delay_ms: eld.count
        ? {
            // The histogram includes the sampling timer's own interval; subtract it.
            p50: Math.max(0, ns2ms(eld.percentile(50)) - ELD_RES_MS),
            p99: Math.max(0, ns2ms(eld.percentile(99)) - ELD_RES_MS),
            max: Math.max(0, ns2ms(eld.max) - ELD_RES_MS),
          }
        : null,
      rss_mb: rssMb,
      node: process.version,
      ws: require('ws/package.json').version,
    },
  };
  report.errors_total = errorsTotal + setupErrorsTotal;
  report.ok = report.errors_total === 0 && conns.length === opts.connections && (opts.mode !== 'idle' || runInfo.pinged === completedMeasured);

  // Close everything politely, but never wait long.
  for (const c of conns) {
    try {
      if (!c.closed) c.ws.close(1000, 'bench done');
    } catch (_) {
      /* ignore */
    }
  }
  const closeDeadline = performance.now() + 3000;
  while (conns.some((c) => !c.closed) && performance.now() < closeDeadline) await sleep(20);
  for (const c of conns) if (!c.closed) c.ws.terminate();

  process.stdout.write(JSON.stringify(report) + '\n', () => process.exit(report.ok ? 0 : 1));
}

main().catch((e) => {
  process.stderr.write(`loadgen: fatal: ${e && e.stack ? e.stack : e}\n`);
  process.exit(3);
});
