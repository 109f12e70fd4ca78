//! A DTLS-SRTP leg without rtcp-mux runs one DTLS association per
//! component (RFC 5764 §4.1), as rtpengine does: its RTP port and its RTCP
//! port each handshake, and SRTCP on the RTCP port is keyed by the RTCP
//! association. The relay, passive, must answer each on its own port with
//! its own endpoint, whichever ClientHello comes first; when both went to
//! one endpoint, the one that came second was lost and the call had no
//! media half the time. Real io_uring workers over loopback; every wait is
//! bounded.

mod common;
use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_dataplane::{start, RelayConfig};
use tern_secure::dtls::{Certificate, Endpoint, Fingerprint, HashAlg, Role, State};
use tern_secure::srtp::{Context, Suite};
use tern_shared::table::testing::TempTable;
use tern_shared::table::{DtlsParams, DtlsRole, LegSecurity, LegStats, SlotConfig, SlotTable};

fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160u8).map(|i| i ^ seq as u8));
    p
}

fn sr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[7u8; 20]);
    p
}

fn stats(t: &SlotTable, id: u32, leg: usize) -> LegStats {
    t.stats(id, leg).unwrap()
}

/// One client endpoint on its own socket, aimed at one relay port.
struct Client {
    ep: Endpoint,
    sock: UdpSocket,
    to: SocketAddr,
}

impl Client {
    fn flush(&mut self) {
        while let Some(d) = self.ep.poll_transmit() {
            self.sock.send_to(&d, self.to).unwrap();
        }
    }

    /// Feeds what arrived and fires the timer; bounded by the socket's
    /// short read timeout.
    fn step(&mut self) {
        let mut buf = [0u8; 2048];
        self.sock
            .set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        while let Ok((n, _)) = self.sock.recv_from(&mut buf) {
            let _ = self.ep.handle_datagram(&buf[..n]);
        }
        if self.ep.timeout() == Some(Duration::ZERO) {
            let _ = self.ep.handle_timeout();
        }
        self.flush();
    }

    /// (protect, unprotect) contexts from the finished handshake.
    fn contexts(&mut self) -> (Context, Context) {
        let k = self.ep.take_keying().expect("keys after the handshake");
        let suite = Suite::from_dtls_profile(k.profile).unwrap();
        (
            Context::new(suite, &k.local_key, &k.local_salt).unwrap(),
            Context::new(suite, &k.remote_key, &k.remote_salt).unwrap(),
        )
    }
}

fn protect_rtcp(c: &mut Context, p: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; p.len() + 64];
    b[..p.len()].copy_from_slice(p);
    let n = c.protect_rtcp(&mut b, p.len()).unwrap();
    b.truncate(n);
    b
}

fn protect_rtp(c: &mut Context, p: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; p.len() + 32];
    b[..p.len()].copy_from_slice(p);
    let n = c.protect_rtp(&mut b, p.len()).unwrap();
    b.truncate(n);
    b
}

#[test]
fn each_component_handshakes_on_its_own_port_rtcp_first() {
    let t = TempTable::new("dp-dtls-comp", 31900, 31999, 1).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let cfg = RelayConfig {
        workers: 1,
        bind_ip: "127.0.0.1".parse().unwrap(),
        pin: false,
    };
    let relay = start(cfg, t.clone(), stop.clone()).unwrap();
    let relay_fp = Fingerprint {
        algorithm: HashAlg::Sha256,
        digest: t
            .dtls_fingerprint()
            .expect("the relay's fingerprint")
            .to_vec(),
    };
    let cert = Certificate::generate().unwrap();
    let (a, a_rtcp) = (udp(), udp());
    let (b_rtp, b_rtcp) = (udp(), udp());

    // A plain; B DTLS-SRTP, relay passive, RTP and RTCP on their own ports.
    let id = t.reserve().unwrap();
    let mut sc = SlotConfig::default();
    sc.legs[0].peer = Some(a.local_addr().unwrap());
    sc.legs[0].peer_rtcp = Some(a_rtcp.local_addr().unwrap());
    sc.legs[1].peer = Some(b_rtp.local_addr().unwrap());
    sc.legs[1].peer_rtcp = Some(b_rtcp.local_addr().unwrap());
    sc.legs[1].secure = LegSecurity {
        dtls: DtlsParams::new(DtlsRole::Passive, 3, &cert.fingerprint().digest),
        ..LegSecurity::default()
    };
    assert!(sc.legs[1].secure.dtls.is_some());
    t.publish(id, &sc).unwrap();
    assert!(wait_until(2000, || t.is_applied(id)));
    let (ta, ta_rtcp) = (t.ports(id, 0).rtp, t.ports(id, 0).rtcp);
    let (tb, tb_rtcp) = (t.ports(id, 1).rtp, t.ports(id, 1).rtcp);

    let mut rtcp_c = Client {
        ep: Endpoint::new(&cert, Role::Active, relay_fp.clone()).unwrap(),
        sock: b_rtcp,
        to: at(tb_rtcp),
    };
    let mut rtp_c = Client {
        ep: Endpoint::new(&cert, Role::Active, relay_fp).unwrap(),
        sock: b_rtp,
        to: at(tb),
    };
    // The RTCP component's ClientHello first: the order that broke.
    rtcp_c.flush();
    std::thread::sleep(Duration::from_millis(100));
    rtp_c.flush();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end
        && !(rtp_c.ep.state() == State::Connected && rtcp_c.ep.state() == State::Connected)
    {
        rtcp_c.step();
        rtp_c.step();
    }
    assert_eq!(rtp_c.ep.state(), State::Connected, "RTP component");
    assert_eq!(rtcp_c.ep.state(), State::Connected, "RTCP component");
    let (mut rtp_out, mut rtp_in) = rtp_c.contexts();
    let (mut rtcp_out, mut rtcp_in) = rtcp_c.contexts();
    for s in [&rtp_c.sock, &rtcp_c.sock, &a, &a_rtcp] {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
    }
    let recv = |s: &UdpSocket| {
        let mut buf = [0u8; 2048];
        s.recv_from(&mut buf).ok().map(|(n, _)| buf[..n].to_vec())
    };

    // SRTP both ways with the RTP association's keys (the first relayed
    // packet may wait for the worker to install the keys: retried).
    let mut got = None;
    for seq in 1..20u16 {
        let p = rtp(0xbbbb, seq);
        rtp_c
            .sock
            .send_to(&protect_rtp(&mut rtp_out, &p), at(tb))
            .unwrap();
        if let Some(g) = recv(&a) {
            got = Some((g, p));
            break;
        }
    }
    let (g, p) = got.expect("B's SRTP reached A decrypted");
    assert_eq!(g, p);
    a.send_to(&rtp(0xaaaa, 7), at(ta)).unwrap();
    let mut srtp = recv(&rtp_c.sock).expect("SRTP at B's RTP port");
    let n = rtp_in
        .unprotect_rtp(&mut srtp)
        .expect("RTP association keys");
    assert_eq!(&srtp[..n], &rtp(0xaaaa, 7)[..]);

    // SRTCP on the RTCP port with the RTCP association's keys, both ways.
    let b_sr = sr(0xbbbb);
    rtcp_c
        .sock
        .send_to(&protect_rtcp(&mut rtcp_out, &b_sr), at(tb_rtcp))
        .unwrap();
    assert_eq!(recv(&a_rtcp), Some(b_sr.clone()), "plain RTCP at A");
    let a_sr = sr(0xaaaa);
    a_rtcp.send_to(&a_sr, at(ta_rtcp)).unwrap();
    let mut srtcp = recv(&rtcp_c.sock).expect("SRTCP at B's RTCP port");
    let n = rtcp_in
        .unprotect_rtcp(&mut srtcp)
        .expect("RTCP association keys");
    assert_eq!(&srtcp[..n], &a_sr[..]);
    // The RTP association's keys do not authenticate there (another
    // SSRC, so the replay check, which comes first, passes).
    let auth0 = stats(&t, id, 1).drop_srtp_auth;
    rtcp_c
        .sock
        .send_to(&protect_rtcp(&mut rtp_out, &sr(0xbbbc)), at(tb_rtcp))
        .unwrap();
    assert!(
        wait_until(1000, || stats(&t, id, 1).drop_srtp_auth == auth0 + 1),
        "{:?}",
        stats(&t, id, 1)
    );

    stop.store(true, Ordering::Relaxed);
    relay.join().unwrap();
}
