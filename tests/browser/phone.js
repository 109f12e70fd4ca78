// The page's phone: JsSIP over one WebSocket, audio only.
//
// Query parameters: ws (wss:// or ws:// URL), user, password (optional:
// digest only when challenged), domain (default: the WebSocket's host),
// call (a user or sip: URI to call once registered), answer=1 (answer
// every incoming call), auto=1 (start without the form; the test driver
// passes it), debug=1 (JsSIP's log on the console).
//
// For a driver: window.phoneState (registered, call state, errors, events),
// window.phoneStats() (a promise of the inbound/outbound audio RTP counters
// of the call's RTCPeerConnection, from getStats()), window.phoneIce() (both
// descriptions' ice-ufrag and audio direction), window.phoneHold(),
// phoneUnhold() and phoneIceRestart() (promises: a re-INVITE answered),
// window.phoneHangup().
(function () {
  'use strict';
  const q = new URLSearchParams(location.search);
  const form = document.getElementById('form');
  for (const k of ['ws', 'user', 'password', 'domain', 'call']) {
    if (q.has(k)) form.elements[k].value = q.get(k);
  }
  form.elements.answer.checked = q.get('answer') === '1';
  if (!form.elements.ws.value) form.elements.ws.value = 'ws://127.0.0.1:5066';

  const state = {
    started: false,
    registered: false,
    registrationError: null,
    call: 'idle', // idle, calling, progress, accepted, confirmed, ended, failed
    callDirection: null,
    callEnd: null,
    errors: [],
    events: [],
    localCandidates: [],
  };
  window.phoneState = state;
  let ua = null;
  let session = null;

  function note(what) {
    state.events.push(`${(performance.now() / 1000).toFixed(2)} ${what}`);
    if (state.events.length > 200) state.events.shift();
    document.getElementById('state').textContent = JSON.stringify(state, null, 1);
  }
  function error(what) {
    state.errors.push(String(what));
    note(`error: ${what}`);
  }
  window.addEventListener('error', (e) => error(e.message));
  window.addEventListener('unhandledrejection', (e) => error(e.reason));

  // Audio only, no STUN/TURN: host candidates (the driver runs everything
  // on one machine).
  const pcConfig = { iceServers: [] };
  const mediaConstraints = { audio: true, video: false };

  function attach(s) {
    session = s;
    state.callDirection = s.direction;
    state.call = s.direction === 'outgoing' ? 'calling' : 'incoming';
    note(`session ${s.direction}`);
    const watchPc = (pc) => {
      pc.addEventListener('track', (e) => {
        document.getElementById('remote').srcObject = e.streams[0] || new MediaStream([e.track]);
      });
      pc.addEventListener('icecandidate', (e) => {
        if (e.candidate) state.localCandidates.push(e.candidate.candidate);
      });
      pc.addEventListener('iceconnectionstatechange', () => note(`ice ${pc.iceConnectionState}`));
      pc.addEventListener('connectionstatechange', () => note(`pc ${pc.connectionState}`));
    };
    if (s.connection) watchPc(s.connection);
    s.on('peerconnection', (e) => watchPc(e.peerconnection));
    // What the browser refused, word for word (Chromium's reason for an
    // SDP it will not take is the useful part).
    for (const ev of ['getusermediafailed', 'peerconnection:createofferfailed',
      'peerconnection:createanswerfailed', 'peerconnection:setlocaldescriptionfailed',
      'peerconnection:setremotedescriptionfailed']) {
      s.on(ev, (e) => error(`${ev}: ${e && e.message ? e.message : e}`));
    }
    s.on('progress', () => { state.call = 'progress'; note('progress'); });
    s.on('accepted', () => { state.call = 'accepted'; note('accepted'); });
    s.on('confirmed', () => { state.call = 'confirmed'; note('confirmed'); });
    s.on('ended', (e) => {
      state.call = 'ended';
      state.callEnd = `${e.originator}: ${e.cause}`;
      note(`ended ${state.callEnd}`);
    });
    s.on('failed', (e) => {
      state.call = 'failed';
      state.callEnd = `${e.originator}: ${e.cause}`;
      error(`call failed (${state.callEnd}${e.message && e.message.status_code ? `, ${e.message.status_code} ${e.message.reason_phrase}` : ''})`);
    });
  }

  function start() {
    if (state.started) return;
    state.started = true;
    const f = form.elements;
    const wsUrl = f.ws.value;
    const domain = f.domain.value || new URL(wsUrl).hostname;
    const target = f.call.value;
    const answer = f.answer.checked;
    if (q.get('debug') === '1') JsSIP.debug.enable('JsSIP:*');
    note(`start ${f.user.value}@${domain} via ${wsUrl}`);
    try {
      ua = new JsSIP.UA({
        sockets: [new JsSIP.WebSocketInterface(wsUrl)],
        uri: `sip:${f.user.value}@${domain}`,
        password: f.password.value || undefined,
        register: true,
        session_timers: false,
        connection_recovery_min_interval: 1,
        connection_recovery_max_interval: 4,
      });
    } catch (e) {
      error(`UA: ${e && e.message ? e.message : e}`);
      return;
    }
    ua.on('connected', () => note('ws connected'));
    ua.on('disconnected', (e) => note(`ws disconnected${e && e.error ? ' (error)' : ''}`));
    ua.on('registered', () => {
      const first = !state.registered;
      state.registered = true;
      state.registrationError = null;
      note('registered');
      if (first && target) {
        const uri = target.includes(':') ? target : `sip:${target}@${domain}`;
        attach(ua.call(uri, { mediaConstraints, pcConfig, rtcOfferConstraints: { offerToReceiveAudio: true } }));
      }
    });
    ua.on('unregistered', () => { state.registered = false; note('unregistered'); });
    ua.on('registrationFailed', (e) => {
      state.registered = false;
      state.registrationError = e.cause + (e.response ? ` (${e.response.status_code} ${e.response.reason_phrase})` : '');
      error(`registration failed: ${state.registrationError}`);
    });
    ua.on('newRTCSession', (e) => {
      if (e.originator !== 'remote') return;
      if (session && !session.isEnded()) {
        e.session.terminate({ status_code: 486 });
        return;
      }
      attach(e.session);
      if (answer) e.session.answer({ mediaConstraints, pcConfig });
    });
    ua.start();
  }

  window.phoneStats = async function () {
    const out = { packetsReceived: 0, bytesReceived: 0, packetsLost: 0, packetsSent: 0, codec: null, pair: null };
    const pc = session && session.connection;
    if (!pc) return out;
    const stats = await pc.getStats();
    const byId = new Map();
    stats.forEach((s) => byId.set(s.id, s));
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && (s.kind || s.mediaType) === 'audio') {
        out.packetsReceived += s.packetsReceived || 0;
        out.bytesReceived += s.bytesReceived || 0;
        out.packetsLost += s.packetsLost || 0;
        const c = byId.get(s.codecId);
        if (c) out.codec = `${c.mimeType}/${c.clockRate}`;
      } else if (s.type === 'outbound-rtp' && (s.kind || s.mediaType) === 'audio') {
        out.packetsSent += s.packetsSent || 0;
      } else if (s.type === 'transport' && s.selectedCandidatePairId) {
        out.iceLocalUfrag = s.iceLocalUsernameFragment || null;
        out.iceState = s.iceState || null;
        out.dtlsState = s.dtlsState || null;
        out.selectedCandidatePairChanges = s.selectedCandidatePairChanges;
        const p = byId.get(s.selectedCandidatePairId);
        const l = p && byId.get(p.localCandidateId);
        const r = p && byId.get(p.remoteCandidateId);
        if (l && r) out.pair = `${l.address || l.ip}:${l.port} -> ${r.address || r.ip}:${r.port} (${l.candidateType}/${r.candidateType} ${l.protocol})`;
      }
    });
    return out;
  };
  // The call's ICE credentials and audio direction as each side's
  // description says (local: the browser's, remote: its peer's, here tern).
  window.phoneIce = function () {
    const pc = session && session.connection;
    const read = (d) => {
      if (!d || !d.sdp) return null;
      const ufrag = /^a=ice-ufrag:(\S+)/m.exec(d.sdp);
      const dir = /^a=(sendrecv|sendonly|recvonly|inactive)\s*$/m.exec(d.sdp);
      return { type: d.type, ufrag: ufrag ? ufrag[1] : null, direction: dir ? dir[1] : null };
    };
    return {
      local: pc ? read(pc.localDescription) : null,
      remote: pc ? read(pc.remoteDescription) : null,
      iceConnectionState: pc ? pc.iceConnectionState : null,
      onHold: session ? session.isOnHold() : null,
    };
  };
  // An offer inside the call (hold, unhold, renegotiate): a promise that
  // resolves when JsSIP's done callback runs (its re-INVITE got a 2xx and
  // the answer was set), and rejects when JsSIP refuses to re-offer or the
  // call ends first (JsSIP ends it when the re-INVITE fails).
  function reoffer(what, start) {
    return new Promise((resolve, reject) => {
      if (!session || session.isEnded()) {
        reject(new Error(`${what}: no call`));
        return;
      }
      const s = session;
      const ended = (e) => reject(new Error(`${what}: the call ended (${e.originator}: ${e.cause})`));
      s.once('ended', ended);
      s.once('failed', ended);
      note(`${what} sent`);
      const ok = start(s, () => {
        s.removeListener('ended', ended);
        s.removeListener('failed', ended);
        note(`${what} answered`);
        resolve(window.phoneIce());
      });
      if (!ok) {
        s.removeListener('ended', ended);
        s.removeListener('failed', ended);
        reject(new Error(`${what}: JsSIP would not re-offer now`));
      }
    });
  }
  window.phoneHold = () => reoffer('hold', (s, done) => s.hold({}, done));
  window.phoneUnhold = () => reoffer('unhold', (s, done) => s.unhold({}, done));
  window.phoneIceRestart = () => reoffer('ice restart', (s, done) => s.renegotiate(
    { rtcOfferConstraints: { offerToReceiveAudio: true, iceRestart: true } }, done));
  window.phoneHangup = function () {
    if (session && !session.isEnded()) session.terminate();
  };
  window.phoneStop = function () {
    window.phoneHangup();
    if (ua) ua.stop();
  };

  form.addEventListener('submit', (e) => { e.preventDefault(); start(); });
  document.getElementById('hangup').addEventListener('click', () => window.phoneHangup());
  note('loaded');
  if (q.get('auto') === '1') start();
})();
