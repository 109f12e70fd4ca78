// Drives the web phone (phone.html) in a real Chromium with playwright-core,
// for the tests of SIP over WebSocket. Prints one JSON line, exits 0 only
// when every call got media.
//
//   node drive.mjs call --ws URL --user U [--password P] [--domain D] --target T
//   node drive.mjs pair --ws URL --user A [--password PA] --user2 B [--password2 PB]
//                       [--ws2 URL2] [--domain D]
//
// call: one page registers and calls T (a user or a sip: URI); after
//   --seconds (default 5) of the confirmed call it reads the inbound audio
//   RTP counters of its RTCPeerConnection.
// pair: page B registers and answers, page A registers and calls B; both
//   report their inbound counters.
// Both modes pass when every page's inbound-rtp packetsReceived is at least
// --min-packets (default 100). Every step is bounded (--register-timeout,
// --answer-timeout, and --timeout for the whole run, seconds).
//
// Options: --page URL (the phone served elsewhere, e.g. by `cargo run
// --example webphone`; default: serve.mjs on a free port), --chromium PATH (default /usr/bin/chromium), --chromium-arg ARG
// (repeatable, appended), --drop-flag FLAG (repeatable: leave one of the
// default flags out, for experiments), --headed, --debug (JsSIP's log and the pages'
// consoles on stderr).
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from './serve.mjs';

const FLAGS = [
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--ignore-certificate-errors',
  // Two pages of one browser talk at once: neither is a throttled
  // background tab.
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
];

function parseArgs(argv) {
  const o = { mode: argv[0], chromiumArgs: [], dropFlags: [] };
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const k = a.slice(2);
    if (k === 'headed' || k === 'debug') { o[k] = true; continue; }
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    if (k === 'chromium-arg') o.chromiumArgs.push(v);
    else if (k === 'drop-flag') o.dropFlags.push(v);
    else o[k] = v;
  }
  return o;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
  if (opts.mode !== 'call' && opts.mode !== 'pair') throw new Error('mode is `call` or `pair`');
  for (const k of opts.mode === 'call' ? ['ws', 'user', 'target'] : ['ws', 'user', 'user2']) {
    if (!opts[k]) throw new Error(`--${k} is required in ${opts.mode} mode`);
  }
} catch (e) {
  console.error(`drive.mjs: ${e.message}`);
  console.log(JSON.stringify({ ok: false, error: `usage: ${e.message}` }));
  process.exit(2);
}
const num = (k, d) => (opts[k] === undefined ? d : Number(opts[k]));
const seconds = num('seconds', 5);
const minPackets = num('min-packets', 100);
const registerTimeout = num('register-timeout', 15) * 1000;
const answerTimeout = num('answer-timeout', 20) * 1000;
const overall = num('timeout', 60) * 1000;

const result = { ok: false, mode: opts.mode, seconds, minPackets, pages: {}, error: null };
const pages = {}; // name -> { page, console: [] }
let browser = null;
let server = null;
let profile = null;
let done = false;

async function snapshot() {
  for (const [name, p] of Object.entries(pages)) {
    try {
      const st = await withTimeout(p.page.evaluate(() => window.phoneState), 2000, 'phoneState');
      result.pages[name] = { ...result.pages[name], ...summarize(st) };
    } catch (e) {
      result.pages[name] = { ...result.pages[name], stateError: String(e.message || e) };
    }
  }
}

function summarize(st) {
  if (!st) return { state: null };
  return {
    registered: st.registered,
    registrationError: st.registrationError,
    call: st.call,
    callEnd: st.callEnd,
    errors: st.errors,
    localCandidates: st.localCandidates,
    events: st.events.slice(-30),
  };
}

async function cleanup() {
  const closing = (async () => {
    for (const p of Object.values(pages)) {
      await p.page.evaluate(() => window.phoneStop && window.phoneStop()).catch(() => {});
    }
    // Let the BYE and un-REGISTER leave before the sockets close.
    await new Promise((r) => setTimeout(r, 300));
    if (browser) await browser.close().catch(() => {});
    if (server) await server.close().catch(() => {});
  })();
  await withTimeout(closing, 8000, 'closing the browser').catch((e) => console.error(`drive.mjs: ${e.message}`));
  if (profile) rmSync(profile, { recursive: true, force: true });
}

async function finish(ok, error) {
  if (done) return;
  done = true;
  clearTimeout(overallTimer);
  result.ok = ok;
  result.error = error || null;
  if (!ok) {
    await snapshot().catch(() => {});
    for (const [name, p] of Object.entries(pages)) {
      console.error(`---- page ${name} console (last ${p.console.length} lines)\n${p.console.join('\n')}`);
    }
    console.error(`drive.mjs: FAILED: ${error}`);
  }
  await cleanup();
  console.log(JSON.stringify(result));
  process.exit(ok ? 0 : 1);
}

const overallTimer = setTimeout(() => finish(false, `overall timeout of ${overall / 1000} s`), overall);

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`${what}: no result within ${ms / 1000} s`)), ms); }),
  ]);
}

async function openPage(name, params) {
  const page = await browser.newPage();
  const entry = { page, console: [] };
  pages[name] = entry;
  page.on('console', (m) => {
    entry.console.push(`[${m.type()}] ${m.text()}`);
    if (entry.console.length > 300) entry.console.shift();
    if (opts.debug) console.error(`[${name}] ${m.text()}`);
  });
  page.on('pageerror', (e) => entry.console.push(`[pageerror] ${e.message}`));
  const q = new URLSearchParams({ auto: '1', ...params });
  if (opts.debug) q.set('debug', '1');
  await page.goto(`${server.url}?${q}`, { timeout: 10000 });
  return page;
}

async function waitFor(name, fn, ms, what) {
  const page = pages[name].page;
  try {
    await page.waitForFunction(fn, null, { timeout: ms, polling: 100 });
  } catch (e) {
    throw new Error(`page ${name}: ${what} not within ${ms / 1000} s`);
  }
  const st = await page.evaluate(() => window.phoneState);
  if (st.registrationError) throw new Error(`page ${name}: registration failed: ${st.registrationError}`);
  if (st.call === 'failed' || st.call === 'ended') throw new Error(`page ${name}: call ${st.call} (${st.callEnd})`);
}

const registered = () => window.phoneState.registered || !!window.phoneState.registrationError;
const callUp = () => ['confirmed', 'failed', 'ended'].includes(window.phoneState.call);

async function main() {
  server = opts.page ? { url: opts.page, close: async () => {} } : await startServer(0);
  profile = mkdtempSync(join(tmpdir(), 'tern-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: opts.chromium || '/usr/bin/chromium',
    headless: !opts.headed,
    args: [...FLAGS.filter((f) => !opts.dropFlags.includes(f)), ...opts.chromiumArgs],
    ignoreHTTPSErrors: true,
    timeout: 20000,
  });
  browser = context;
  // The persistent context opens one blank page; the phones get their own.
  const common = { ws: opts.ws };
  if (opts.domain) common.domain = opts.domain;
  if (opts.mode === 'call') {
    await openPage('a', { ...common, user: opts.user, password: opts.password || '', call: opts.target });
    await waitFor('a', registered, registerTimeout, 'registration');
    await waitFor('a', callUp, answerTimeout, 'the call (confirmed)');
  } else {
    await openPage('b', { ...common, ws: opts.ws2 || opts.ws, user: opts.user2, password: opts.password2 || '', answer: '1' });
    await waitFor('b', registered, registerTimeout, 'registration');
    await openPage('a', { ...common, user: opts.user, password: opts.password || '', call: opts.user2 });
    await waitFor('a', registered, registerTimeout, 'registration');
    await waitFor('a', callUp, answerTimeout, 'the call (confirmed)');
    await waitFor('b', callUp, answerTimeout, 'the call (confirmed)');
  }
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const short = [];
  for (const [name, p] of Object.entries(pages)) {
    const stats = await withTimeout(p.page.evaluate(() => window.phoneStats()), 5000, `page ${name} getStats`);
    const st = await p.page.evaluate(() => window.phoneState);
    result.pages[name] = { ...summarize(st), ...stats };
    if (st.call !== 'confirmed') short.push(`page ${name}: call ${st.call} (${st.callEnd})`);
    else if (stats.packetsReceived < minPackets) short.push(`page ${name}: ${stats.packetsReceived} packets received < ${minPackets}`);
  }
  if (!opts.debug) {
    for (const p of Object.values(result.pages)) delete p.events;
  }
  await finish(short.length === 0, short.join('; ') || null);
}

main().catch((e) => finish(false, String(e && e.message ? e.message : e)));
