// Drives the web phone (phone.html) in a real Chromium with playwright-core,
// for the tests of SIP over WebSocket. Prints one JSON line, exits 0 only
// when every call got media.
//
//   node drive.mjs call --ws URL --user U [--password P] [--domain D] --target T
//                       [--hold-resume] [--ice-restart] [--fetch URL]
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
// --answer-timeout, --reoffer-timeout, and --timeout for the whole run,
// seconds).
//
// In call mode, once media flows, offers inside the call (each a re-INVITE
// whose 2xx must come within --reoffer-timeout, default 15 s):
//   --hold-resume: session.hold() (a=sendonly) until JsSIP has the answer,
//     the call still confirmed; --hold-seconds (default 2) on hold; then
//     session.unhold() (sendrecv), and packetsReceived must rise by more
//     than --step-packets (default 100) in --step-seconds (default 3) from
//     the count at the answer (Chromium restarts the inbound-rtp counters
//     across a hold, so each step counts from its own start).
//   --ice-restart: session.renegotiate({ rtcOfferConstraints: { iceRestart:
//     true } }): the browser's ice-ufrag must change and so must the
//     answerer's (tern's) in the remote description, the browser's ICE
//     transport must end up connected with the new ufrag, and
//     packetsReceived must rise by more than --step-packets again.
// The result's `steps` holds each step's packet counts, ufrags and
// directions. --fetch URL (optional, e.g. tern's /calls): GET at the start
// and at the end of the hold and after the ICE restart's media check, its
// JSON kept in steps.hold.fetched, steps.hold.fetchedEnd and
// steps.iceRestart.fetched.
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
    if (['headed', 'debug', 'hold-resume', 'ice-restart'].includes(k)) { o[k] = true; continue; }
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
const reofferTimeout = num('reoffer-timeout', 15) * 1000;
const holdSeconds = num('hold-seconds', 2);
const stepSeconds = num('step-seconds', 3);
const stepPackets = num('step-packets', 100);
if (opts.mode !== 'call' && (opts['hold-resume'] || opts['ice-restart'])) {
  console.error('drive.mjs: --hold-resume and --ice-restart are for call mode');
  console.log(JSON.stringify({ ok: false, error: 'usage: --hold-resume and --ice-restart are for call mode' }));
  process.exit(2);
}

const result = { ok: false, mode: opts.mode, seconds, minPackets, pages: {}, steps: {}, error: null };
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
  if (short.length === 0 && (opts['hold-resume'] || opts['ice-restart'])) {
    const why = await reoffers('a');
    if (why) short.push(why);
  }
  await finish(short.length === 0, short.join('; ') || null);
}

const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000));

// Page `name`'s inbound packet count and ICE view now.
async function look(name) {
  const page = pages[name].page;
  const stats = await withTimeout(page.evaluate(() => window.phoneStats()), 5000, `page ${name} getStats`);
  const ice = await withTimeout(page.evaluate(() => window.phoneIce()), 2000, `page ${name} phoneIce`);
  const st = await page.evaluate(() => window.phoneState);
  return {
    packetsReceived: stats.packetsReceived,
    packetsSent: stats.packetsSent,
    pair: stats.pair,
    iceLocalUfrag: stats.iceLocalUfrag,
    iceState: stats.iceState,
    dtlsState: stats.dtlsState,
    localUfrag: ice.local && ice.local.ufrag,
    remoteUfrag: ice.remote && ice.remote.ufrag,
    localDirection: ice.local && ice.local.direction,
    remoteDirection: ice.remote && ice.remote.direction,
    iceConnectionState: ice.iceConnectionState,
    onHold: ice.onHold,
    call: st.call,
    errors: st.errors.length,
  };
}

// GET --fetch (bounded): its JSON, or { status, text } / { error }; null
// without --fetch.
async function fetchJson() {
  const url = opts.fetch;
  if (!url) return null;
  try {
    const r = await withTimeout(fetch(url), 5000, `GET ${url}`);
    const text = await r.text();
    if (r.status !== 200) return { status: r.status, text };
    try { return JSON.parse(text); } catch (_) { return { status: r.status, text }; }
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) };
  }
}

// One offer inside the call on page `name` (`fn`: phoneHold, ...), bounded.
async function reoffer(name, what, fn) {
  const page = pages[name].page;
  const t0 = Date.now();
  try {
    await withTimeout(page.evaluate(fn), reofferTimeout, `page ${name}: ${what} (re-INVITE answered)`);
  } catch (e) {
    throw new Error(String(e && e.message ? e.message : e));
  }
  return Date.now() - t0;
}

// Media must keep flowing: packetsReceived from `from` rises by more than
// stepPackets within stepSeconds. Returns the step's figures.
async function flows(name, what, from) {
  await sleep(stepSeconds);
  const after = await look(name);
  const gained = after.packetsReceived - from.packetsReceived;
  if (after.call !== 'confirmed') throw new Error(`${what}: call ${after.call}`);
  if (gained <= stepPackets) {
    throw new Error(`${what}: packetsReceived rose by ${gained} in ${stepSeconds} s (${from.packetsReceived} -> ${after.packetsReceived}), want > ${stepPackets}`);
  }
  return { after, gained };
}

// The steps of --hold-resume and --ice-restart on page `name`; a reason
// when one fails, else null. Figures go to result.steps.
async function reoffers(name) {
  const steps = result.steps;
  try {
    steps.start = await look(name);
    if (opts['hold-resume']) {
      const ms = await reoffer(name, 'hold', () => window.phoneHold());
      const held = await look(name);
      steps.hold = { ms, at: held };
      if (held.call !== 'confirmed') throw new Error(`hold: call ${held.call} after the re-INVITE`);
      if (!held.onHold || held.onHold.local !== true) throw new Error('hold: JsSIP does not report the call held');
      steps.hold.fetched = await fetchJson();
      await sleep(holdSeconds);
      const late = await look(name);
      steps.hold.fetchedEnd = await fetchJson();
      steps.hold.end = late;
      steps.hold.gained = late.packetsReceived - held.packetsReceived;
      if (late.call !== 'confirmed') throw new Error(`hold: call ${late.call} while held`);
      const ums = await reoffer(name, 'unhold', () => window.phoneUnhold());
      const resumed = await look(name);
      if (resumed.onHold && resumed.onHold.local) throw new Error('unhold: JsSIP still reports the call held');
      const f = await flows(name, 'after resume', resumed);
      steps.resume = { ms: ums, at: resumed, after: f.after, gained: f.gained };
    }
    if (opts['ice-restart']) {
      const before = await look(name);
      const ms = await reoffer(name, 'ice restart', () => window.phoneIceRestart());
      const at = await look(name);
      steps.iceRestart = { ms, before, at };
      if (at.localUfrag === before.localUfrag) throw new Error(`ice restart: the browser's ice-ufrag stayed ${at.localUfrag}`);
      if (at.remoteUfrag === before.remoteUfrag) throw new Error(`ice restart: tern answered the same ice-ufrag ${at.remoteUfrag}`);
      // The browser's ICE transport on the new credentials, connected.
      const deadline = Date.now() + 10000;
      let now = at;
      while (Date.now() < deadline) {
        if (['connected', 'completed'].includes(now.iceConnectionState)
            && (!now.iceLocalUfrag || now.iceLocalUfrag === at.localUfrag)) break;
        await sleep(0.2);
        now = await look(name);
      }
      steps.iceRestart.connected = now;
      if (!['connected', 'completed'].includes(now.iceConnectionState)) {
        throw new Error(`ice restart: ICE ${now.iceConnectionState} 10 s after the answer`);
      }
      if (now.iceLocalUfrag && now.iceLocalUfrag !== at.localUfrag) {
        throw new Error(`ice restart: the transport still uses ufrag ${now.iceLocalUfrag} 10 s after the answer`);
      }
      const f = await flows(name, 'after the ICE restart', now);
      steps.iceRestart.after = f.after;
      steps.iceRestart.gained = f.gained;
      steps.iceRestart.fetched = await fetchJson();
    }
    const end = await look(name);
    steps.end = end;
    if (end.errors > 0) throw new Error(`page ${name}: ${end.errors} error(s) in the page`);
    return null;
  } catch (e) {
    return String(e && e.message ? e.message : e);
  }
}

main().catch((e) => finish(false, String(e && e.message ? e.message : e)));
