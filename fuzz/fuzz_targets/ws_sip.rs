//! SIP over WebSocket (RFC 7118) as the transport sees it: arbitrary
//! bytes from a connection go through `StreamCodec` (tungstenite's
//! opening handshake and framing, tern's bounds), and every message it
//! yields goes through `SipCore` as if read from that WebSocket. The
//! first byte picks the phase fuzzed: even, the bytes follow a valid
//! opening handshake (frames); odd, they are the handshake itself.
//! Nothing may panic or hang; each message yields at most a bounded
//! number of answers, and an answer is never bigger than the bound.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tern_shared::table::{LegPorts, SlotConfig};
use tern_signaling::relay::{MediaRelay, RelayError};
use tern_signaling::stream::{Limits, StreamCodec, StreamEvent, StreamKind};
use tern_signaling::{ConnId, SipConfig, SipCore, Source, Transport};

const HANDSHAKE: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:5066\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n";

/// A relay with a few slots that accepts whatever it is told.
struct FakeRelay(u32);

impl MediaRelay for FakeRelay {
    fn allocate(&mut self) -> Result<u32, RelayError> {
        if self.0 >= 4 {
            return Err(RelayError::Full);
        }
        self.0 += 1;
        Ok(self.0)
    }
    fn media_ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
    fn leg_ports(&self, slot: u32, leg: usize) -> LegPorts {
        let rtp = 20_000 + (slot as u16) * 4 + (leg as u16) * 2;
        LegPorts { rtp, rtcp: rtp + 1 }
    }
    fn program(&mut self, _slot: u32, _cfg: &SlotConfig) -> Result<(), RelayError> {
        Ok(())
    }
    fn release(&mut self, _slot: u32) -> Result<(), RelayError> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let limits = Limits {
        max_message: 8192,
        ..Limits::default()
    };
    let mut codec = StreamCodec::new(StreamKind::Ws, None, limits, now);
    if mode % 2 == 0 {
        codec.on_wire(HANDSHAKE, now).expect("the valid handshake");
        assert!(codec.established());
        let answer = codec.take_wire();
        assert!(answer.starts_with(b"HTTP/1.1 101"));
    }
    // Fed in two pieces, as reads split them.
    let cut = rest.len() / 2;
    let mut r = codec.on_wire(&rest[..cut], now);
    if r.is_ok() {
        r = codec.on_wire(&rest[cut..], now + Duration::from_millis(1));
    }
    let _ = codec.on_tick(now + Duration::from_secs(31));
    // A small nonce table: the default's 262,144 entries would dominate
    // each run.
    let cfg = SipConfig {
        nonce_capacity: 1024,
        ..SipConfig::default()
    };
    let local: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let mut core = SipCore::new(&cfg, Box::new(FakeRelay(0)), local, now);
    let peer: SocketAddr = "192.0.2.7:50123".parse().unwrap();
    let src = Source::stream(Transport::Ws(ConnId(1)), peer);
    let mut events = 0;
    while let Some(ev) = codec.poll_event() {
        events += 1;
        assert!(events <= rest.len(), "more events than bytes");
        if let StreamEvent::Message(m) = ev {
            assert!(m.len() <= limits.max_message);
            core.handle_message(&m, src, now);
            let mut out = 0;
            while let Some(t) = core.poll_output() {
                out += 1;
                assert!(out < 64, "one message caused {out} sends");
                // Answers to the browser go back on its WebSocket (once
                // closed, the codec refuses them).
                if t.transport == src.transport {
                    let _ = codec.send(&t.bytes);
                }
            }
        }
    }
    core.handle_timeout(now + Duration::from_secs(40));
    while core.poll_output().is_some() {}
    let _ = codec.take_wire();
    let _ = r;
});
