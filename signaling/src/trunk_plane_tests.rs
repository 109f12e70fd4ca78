//! Gateway health, trunk registration and RFC 3263 answers on the
//! virtual clock: down-marking on Timer B and on two 503s, calls
//! skipping a down gateway, OPTIONS probes bringing it back, REGISTER
//! with a 401 answered, refreshed at half the grant, retried with
//! backoff and unREGISTERed on drain; SRV answers ordering the gateways.

use std::time::Duration;

use crate::config::SipConfig;
use crate::core_tests::{addr, b_response, codes, invite, only, sdp, summary, H, TERN};
use crate::digest::{self, Algorithm};
use crate::msg::Msg;
use crate::trunk_dns::{DnsAnswer, DnsQuery, SrvTarget};
use crate::trunk_plane::TrunkPlane;
use crate::trunk_register::{granted_expires, RETRY_MIN};

const GW1: &str = "127.0.0.1:5090";
const GW2: &str = "127.0.0.1:5091";
const CARRIER: &str = "10.9.9.1:5060";

fn h_with(name: &str, trunk: &str) -> H {
    let mut h = H::new(name, 40, "");
    let toml = format!(
        "[[trunks]]\nname = \"carrier\"\n{trunk}inbound_from = [\"10.9.9.0/24\"]\n\n[[routes]]\nprefix = \"9\"\nstrip = 1\ntrunk = \"carrier\"\n"
    );
    let c = SipConfig::from_toml(addr(TERN), &toml).unwrap();
    h.core.trunks = TrunkPlane::new(&c.trunks, h.now);
    h.core.cfg.trunks = c.trunks;
    h.core.cfg.routes = c.routes;
    h
}

fn two_gateways(name: &str) -> H {
    h_with(
        name,
        &format!("gateways = [\"{GW1}\", \"{GW2}\"]\nprobe_secs = 5\n"),
    )
}

fn call(h: &mut H, id: &str) -> Vec<(std::net::SocketAddr, Msg)> {
    h.send(
        CARRIER,
        &invite("9123", id, "", &sdp("10.0.0.1", 40000, "")),
    )
}

fn invites_to(out: &[(std::net::SocketAddr, Msg)]) -> Vec<String> {
    out.iter()
        .filter(|(_, m)| m.method() == Some("INVITE"))
        .map(|(d, _)| d.to_string())
        .collect()
}

/// The one probe in `out` (its retransmissions share the Call-ID).
fn probe(out: &[(std::net::SocketAddr, Msg)]) -> (std::net::SocketAddr, Msg) {
    let opts: Vec<_> = out
        .iter()
        .filter(|(_, m)| m.method() == Some("OPTIONS"))
        .collect();
    assert!(!opts.is_empty(), "no OPTIONS in {:?}", summary(out));
    assert!(opts.iter().all(|(_, m)| m.call_id == opts[0].1.call_id));
    opts[0].clone()
}

fn up(h: &H, gw: &str) -> bool {
    let st = h.core.trunk_status(h.now);
    st[0]
        .gateways
        .iter()
        .find(|(a, _)| *a == addr(gw))
        .is_some_and(|(_, u)| *u)
}

#[test]
fn timer_b_marks_down_calls_skip_it_and_an_options_answer_brings_it_back() {
    let mut h = two_gateways("health-tb");
    let out = call(&mut h, "hb-1");
    assert_eq!(invites_to(&out), [GW1]);
    assert!(up(&h, GW1));
    // Timer B (64·T1 = 32 s): the second gateway, and the first is down.
    let out = h.advance(Duration::from_secs(33));
    assert!(
        invites_to(&out).iter().any(|d| d == GW2),
        "{:?}",
        summary(&out)
    );
    assert!(!up(&h, GW1) && up(&h, GW2));
    let inv2 = out
        .iter()
        .find(|(d, m)| *d == addr(GW2) && m.method() == Some("INVITE"))
        .unwrap()
        .1
        .clone();
    let out = h.send(
        GW2,
        &b_response(&inv2, 200, "g2", Some(&sdp("192.0.2.5", 50000, ""))),
    );
    assert_eq!(codes(&out), [200]);
    // The next call goes straight to the second gateway.
    let out = call(&mut h, "hb-2");
    assert_eq!(invites_to(&out), [GW2], "{:?}", summary(&out));
    // Probed every 5 s from the down-marking (at 32 s): OPTIONS to GW1
    // (retransmitted over UDP until answered: one Call-ID).
    let out = h.advance(Duration::from_secs(5));
    let (dest, opt) = probe(&out);
    assert_eq!(dest, addr(GW1));
    assert_eq!(opt.uri_text(), Some(format!("sip:{GW1}").as_str()));
    // 503 keeps it down; the next probe's 404 (any other final) brings it up.
    let out = h.send(GW1, &b_response(&opt, 503, "p", None));
    assert!(out.is_empty(), "{:?}", summary(&out));
    assert!(!up(&h, GW1));
    let out = h.advance(Duration::from_secs(5));
    let (_, opt) = probe(&out);
    h.send(GW1, &b_response(&opt, 404, "p", None));
    assert!(up(&h, GW1));
    let out = call(&mut h, "hb-3");
    assert_eq!(invites_to(&out), [GW1]);
    // No more probes once up (bounded look 20 s ahead).
    let out = h.advance(Duration::from_secs(20));
    assert!(out.iter().all(|(_, m)| m.method() != Some("OPTIONS")));
}

#[test]
fn two_503s_in_a_row_mark_down_and_an_answer_between_resets() {
    let mut h = two_gateways("health-503");
    let ans = sdp("192.0.2.5", 50000, "");
    let fail_first = |h: &mut H, id: &str| {
        let out = call(h, id);
        let inv = only(&out, "INVITE").1.clone();
        let out = h.send(GW1, &b_response(&inv, 503, "g1", None));
        let inv2 = only(&out, "INVITE").1.clone();
        let out = h.send(GW2, &b_response(&inv2, 200, "g2", Some(&ans)));
        assert_eq!(codes(&out), [200]);
    };
    fail_first(&mut h, "h5-1");
    assert!(up(&h, GW1), "one 503 is not enough");
    // An answer other than 503 resets the count.
    let out = call(&mut h, "h5-2");
    let inv = only(&out, "INVITE").1.clone();
    let out = h.send(GW1, &b_response(&inv, 486, "g1", None));
    assert_eq!(codes(&out), [486]);
    fail_first(&mut h, "h5-3");
    assert!(up(&h, GW1));
    fail_first(&mut h, "h5-4");
    assert!(!up(&h, GW1), "two 503s in a row");
    let out = call(&mut h, "h5-5");
    assert_eq!(invites_to(&out), [GW2]);
}

#[test]
fn when_every_gateway_is_down_calls_try_them_anyway() {
    let mut h = h_with("health-all", &format!("gateways = [\"{GW1}\"]\n"));
    call(&mut h, "ha-1");
    h.advance(Duration::from_secs(40));
    assert!(!up(&h, GW1));
    let out = call(&mut h, "ha-2");
    assert_eq!(invites_to(&out), [GW1]);
}

#[test]
fn transport_failure_marks_down_at_once() {
    let mut h = two_gateways("health-tf");
    call(&mut h, "ht-1");
    let now = h.now;
    h.core.transport_failed(addr(GW1), now);
    h.drain();
    assert!(!up(&h, GW1));
}

const REG: &str = "gateways = [\"127.0.0.1:5090\", \"127.0.0.1:5091\"]\nusername = \"tern\"\npassword = \"secret\"\nregister = true\nregister_expires = 120\n";

fn ok_with_expires(req: &Msg, expires: u32) -> String {
    b_response(req, 200, "r", None).replacen(
        "Content-Length: 0",
        &format!("Contact: <sip:tern@{TERN}>;expires={expires}\r\nContent-Length: 0"),
        1,
    )
}

fn registered(h: &H) -> Option<bool> {
    h.core.trunk_status(h.now)[0].registered
}

#[test]
fn registration_answers_401_refreshes_at_half_and_backs_off() {
    let mut h = h_with("reg-flow", REG);
    assert_eq!(registered(&h), Some(false));
    let out = h.advance(Duration::ZERO);
    let (dest, reg) = only(&out, "REGISTER").clone();
    assert_eq!(dest, addr(GW1));
    assert_eq!(reg.uri_text(), Some(format!("sip:{GW1}").as_str()));
    assert_eq!(reg.to.uri, format!("sip:tern@{GW1}"));
    assert_eq!(reg.expires(), Some(120));
    assert_eq!(reg.contacts()[0].uri, format!("sip:tern@{TERN}"));
    let chal = b_response(&reg, 401, "r", None).replacen(
        "Content-Length: 0",
        "WWW-Authenticate: Digest realm=\"carrier\", nonce=\"n1\", qop=\"auth\"\r\nContent-Length: 0",
        1,
    );
    let out = h.send(GW1, &chal);
    let (_, reg2) = only(&out, "REGISTER").clone();
    assert_eq!(reg2.call_id, reg.call_id);
    assert_eq!(reg2.cseq.num, reg.cseq.num + 1);
    let c = digest::parse_credentials(reg2.header("Authorization").unwrap()).unwrap();
    let ha1 = digest::ha1(Algorithm::Md5, "tern", "carrier", "secret");
    assert_eq!(
        c.response,
        digest::expected_response_with(Algorithm::Md5, &ha1, "REGISTER", &c)
    );
    assert_eq!(c.uri, format!("sip:{GW1}"));
    // A stale response (the first CSeq) is ignored.
    let out = h.send(GW1, &ok_with_expires(&reg, 4));
    assert!(out.is_empty());
    assert_eq!(registered(&h), Some(false));
    // Granted 4 s (our Contact's expires wins over what we asked).
    h.send(GW1, &ok_with_expires(&reg2, 4));
    assert_eq!(registered(&h), Some(true));
    // Refreshed at half the grant, to the same gateway, next CSeq.
    let out = h.advance(Duration::from_millis(1900));
    assert!(out.is_empty(), "{:?}", summary(&out));
    let out = h.advance(Duration::from_millis(200));
    let (dest, reg3) = only(&out, "REGISTER").clone();
    assert_eq!((dest, reg3.cseq.num), (addr(GW1), reg2.cseq.num + 1));
    // A refusal: counted, not registered, retried after RETRY_MIN.
    h.send(GW1, &b_response(&reg3, 500, "r", None));
    let st = h.core.trunk_status(h.now);
    assert_eq!(
        (st[0].registered, st[0].register_failures),
        (Some(false), 1)
    );
    let out = h.advance(RETRY_MIN - Duration::from_millis(100));
    assert!(out.is_empty(), "{:?}", summary(&out));
    let out = h.advance(Duration::from_millis(200));
    let (_, reg4) = only(&out, "REGISTER").clone();
    // A second refusal doubles the wait.
    h.send(GW1, &b_response(&reg4, 403, "r", None));
    let out = h.advance(RETRY_MIN * 2 - Duration::from_millis(100));
    assert!(out.is_empty(), "{:?}", summary(&out));
    let out = h.advance(Duration::from_millis(200));
    only(&out, "REGISTER");
}

#[test]
fn unanswered_register_marks_the_gateway_down_and_the_next_one_is_used() {
    let mut h = h_with("reg-down", REG);
    let out = h.advance(Duration::ZERO);
    assert_eq!(only(&out, "REGISTER").0, addr(GW1));
    // Timer F (32 s), then the retry after RETRY_MIN goes to GW2.
    let out = h.advance(Duration::from_secs(32) + RETRY_MIN + Duration::from_millis(10));
    let last = out
        .iter()
        .rfind(|(_, m)| m.method() == Some("REGISTER"))
        .unwrap();
    assert_eq!(last.0, addr(GW2), "{:?}", summary(&out));
    assert!(!up(&h, GW1));
    assert_eq!(h.core.trunk_status(h.now)[0].register_failures, 1);
}

#[test]
fn drain_unregisters_and_waits_for_the_answer() {
    let mut h = h_with("reg-drain", REG);
    let out = h.advance(Duration::ZERO);
    let (_, reg) = only(&out, "REGISTER").clone();
    h.send(GW1, &ok_with_expires(&reg, 120));
    assert_eq!(registered(&h), Some(true));
    h.core.set_draining(Some(5));
    assert!(!h.core.drained());
    let out = h.advance(Duration::ZERO);
    let (_, unreg) = only(&out, "REGISTER").clone();
    assert_eq!(unreg.expires(), Some(0));
    assert!(!h.core.drained());
    h.send(GW1, &ok_with_expires(&unreg, 0));
    assert!(h.core.drained());
    assert_eq!(registered(&h), Some(false));
    // No refresh after an un-REGISTER.
    let out = h.advance(Duration::from_secs(200));
    assert!(out.iter().all(|(_, m)| m.method() != Some("REGISTER")));
}

#[test]
fn granted_expires_prefers_our_contact() {
    let ours = "sip:tern@127.0.0.1:5060";
    assert_eq!(
        granted_expires(
            ["<sip:other@10.0.0.1>;expires=99, <SIP:tern@127.0.0.1:5060>;expires=30",],
            Some("60"),
            ours
        ),
        Some(30)
    );
    assert_eq!(
        granted_expires(["<sip:x@y>;expires=5"], Some(" 60 "), ours),
        Some(60)
    );
    assert_eq!(granted_expires([], Some("soon"), ours), None);
    assert_eq!(
        granted_expires(
            [format!("<{ours}>;expires=99999999999").as_str()],
            None,
            ours
        ),
        Some(u32::MAX)
    );
}

#[test]
fn srv_answers_order_gateways_and_failover_follows_priority() {
    let mut h = h_with("dns-srv", "gateways = [\"carrier.test\"]\n");
    let now = h.now;
    let q = h.core.poll_dns(now).unwrap();
    assert_eq!(
        q,
        DnsQuery {
            host: "carrier.test".into(),
            port: None
        }
    );
    assert!(h.core.poll_dns(now).is_none());
    // Not resolved yet: 503, nothing sent to a gateway.
    let out = call(&mut h, "dn-0");
    assert_eq!(codes(&out), [100, 503], "{:?}", summary(&out));
    let t = |priority, weight, a: &str| SrvTarget {
        priority,
        weight,
        addrs: vec![addr(a)],
    };
    h.core.dns_answer(
        DnsAnswer {
            query: q.clone(),
            result: Ok((
                vec![t(20, 50, GW2), t(10, 50, GW1)],
                Duration::from_secs(60),
            )),
        },
        now,
    );
    let out = call(&mut h, "dn-1");
    let inv = only(&out, "INVITE").1.clone();
    assert_eq!(invites_to(&out), [GW1]);
    let out = h.send(GW1, &b_response(&inv, 503, "g1", None));
    assert_eq!(invites_to(&out), [GW2]);
    // Looked up again when the TTL runs out.
    assert!(h.core.poll_dns(now + Duration::from_secs(59)).is_none());
    assert_eq!(h.core.poll_dns(now + Duration::from_secs(60)), Some(q));
}

#[test]
fn srv_weights_share_the_first_attempts() {
    let mut h = h_with("dns-w", "gateways = [\"carrier.test\"]\n");
    let now = h.now;
    let q = h.core.poll_dns(now).unwrap();
    let t = |weight, a: &str| SrvTarget {
        priority: 10,
        weight,
        addrs: vec![addr(a)],
    };
    h.core.dns_answer(
        DnsAnswer {
            query: q,
            result: Ok((vec![t(10, GW2), t(90, GW1)], Duration::from_secs(600))),
        },
        now,
    );
    let trunk = h.core.cfg.trunks[0].clone();
    let mut first = [0u32; 2];
    for _ in 0..400 {
        let g =
            h.core
                .trunks
                .gateways_for(&trunk, &mut h.core.b2bua.gateways, &mut h.core.rng, now);
        assert_eq!(g.len(), 2);
        first[usize::from(g[0] == addr(GW2))] += 1;
    }
    assert!(first[0] > 300 && first[1] > 10, "{first:?}");
}

#[test]
fn registration_to_a_named_gateway_waits_for_its_address() {
    let reg = "gateways = [\"carrier.test:5090\"]\nusername = \"tern\"\npassword = \"secret\"\nregister = true\n";
    let mut h = h_with("reg-name", reg);
    // No address yet: nothing sent, and no failure counted.
    let out = h.advance(Duration::from_secs(3));
    assert!(out.is_empty(), "{:?}", summary(&out));
    assert_eq!(h.core.trunk_status(h.now)[0].register_failures, 0);
    let now = h.now;
    let q = h.core.poll_dns(now).unwrap();
    assert_eq!(q.port, Some(5090));
    h.core.dns_answer(
        DnsAnswer {
            query: q,
            result: Ok((
                vec![SrvTarget {
                    priority: 0,
                    weight: 0,
                    addrs: vec![addr(GW1)],
                }],
                Duration::from_secs(300),
            )),
        },
        now,
    );
    // Within NO_GATEWAY_WAIT: the REGISTER names the domain, goes to its address.
    let out = h.advance(Duration::from_millis(1100));
    let (dest, r) = only(&out, "REGISTER").clone();
    assert_eq!(dest, addr(GW1));
    assert_eq!(r.uri_text(), Some("sip:carrier.test:5090"));
    assert_eq!(r.to.uri, "sip:tern@carrier.test:5090");
    assert_eq!(r.expires(), Some(crate::trunk::DEFAULT_REGISTER_EXPIRES));
    h.send(GW1, &ok_with_expires(&r, 600));
    assert_eq!(registered(&h), Some(true));
}
