//! Trunks and routes on the virtual clock: parsing, longest-prefix
//! routing with strip/add, failover on 503 and on Timer B, the gateway's
//! 407 answered with the trunk's credentials, trusted inbound sources and
//! the refusal of routes to unauthenticated callers (toll fraud).

use std::time::Duration;

use crate::config::{ConfigError, SipConfig};
use crate::core_tests::{
    addr, answer_challenge, b_response, codes, invite, only, sdp, summary, AUTH_USERS, H, TERN,
};
use crate::digest::{self, Algorithm};
use crate::msg::Msg;
use crate::trunk::{lookup, Gateway};

const GW1: &str = "127.0.0.1:5090";
const GW2: &str = "127.0.0.1:5091";
const GW3: &str = "127.0.0.1:5092";
/// A source trusted as the carrier.
const CARRIER: &str = "10.9.9.1:5060";

const TRUNKS: &str = r#"
[[trunks]]
name = "carrier"
gateways = ["127.0.0.1:5090", "127.0.0.1:5091"]
username = "tern"
password = "secret"
register = false
inbound_from = ["10.9.9.0/24"]

[[trunks]]
name = "intl"
gateways = ["127.0.0.1:5092"]

[[routes]]
prefix = "9"
strip = 1
add = ""
trunk = "carrier"

[[routes]]
prefix = "900"
strip = 3
add = "+44"
trunk = "intl"
"#;

fn trunk_h(name: &str, users: &str) -> H {
    let mut h = H::new(name, 16, users);
    let c = SipConfig::from_toml(addr(TERN), TRUNKS).unwrap();
    h.core.cfg.trunks = c.trunks;
    h.core.cfg.routes = c.routes;
    h
}

fn call(to: &str, id: &str) -> String {
    invite(to, id, "", &sdp("10.0.0.1", 40000, ""))
}

/// The INVITEs we sent, with their destinations.
fn invites(out: &[(std::net::SocketAddr, Msg)]) -> Vec<(String, String)> {
    out.iter()
        .filter(|(_, m)| m.method() == Some("INVITE"))
        .map(|(d, m)| (d.to_string(), m.uri_text().unwrap_or("").to_string()))
        .collect()
}

#[test]
fn config_parses_and_refuses() {
    let c = SipConfig::from_toml(addr(TERN), TRUNKS).unwrap();
    assert_eq!(c.trunks.len(), 2);
    assert_eq!(
        c.trunks[0].gateways,
        [Gateway::Addr(addr(GW1)), Gateway::Addr(addr(GW2))]
    );
    assert_eq!(c.routes.len(), 2);
    let bad = "[[trunks]]\nname = \"x\"\ngateways = [\"127.0.0.1:5090\"]\npasswd = \"p\"\n";
    match SipConfig::from_toml(addr(TERN), bad) {
        Err(ConfigError::UnknownKey {
            key, table, line, ..
        }) => {
            assert_eq!(
                (key.as_str(), table.as_str(), line),
                ("passwd", "[[trunks]]", 4)
            );
        }
        other => panic!("{other:?}"),
    }
    let bad = "[[routes]]\nprefix = \"9\"\ntrunk = \"none\"\nstrp = 1\n";
    assert!(matches!(
        SipConfig::from_toml(addr(TERN), bad),
        Err(ConfigError::UnknownKey { line: 4, .. })
    ));
    for (bad, what) in [
        (
            "[[trunks]]\nname = \"x\"\ngateways = [\"127.0.0.1:5090\"]\nregister = true\n",
            "needs username",
        ),
        (
            "[[trunks]]\nname = \"x\"\ngateways = [\"gw_1.example:5060\"]\n",
            "neither IP:port nor a host name",
        ),
        (
            "[[trunks]]\nname = \"x\"\ngateways = [\"gw.example:0\"]\n",
            "neither IP:port nor a host name",
        ),
        (
            "[[trunks]]\nname = \"x\"\ngateways = [\"1.2.3.4.5\"]\n",
            "neither IP:port nor a host name",
        ),
        ("[sip]\ndns = \"resolver\"\n", "[sip] dns"),
        ("[[trunks]]\nname = \"x\"\ngateways = []\n", "no gateways"),
        (
            "[[trunks]]\nname = \"x\"\ngateways = [\"127.0.0.1:1\"]\nusername = \"u\"\n",
            "together",
        ),
        ("[[routes]]\nprefix = \"9\"\ntrunk = \"none\"\n", "no trunk"),
    ] {
        let e = SipConfig::from_toml(addr(TERN), bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains(what), "{e}");
    }
}

#[test]
fn longest_prefix_wins_with_strip_and_add() {
    let c = SipConfig::from_toml(addr(TERN), TRUNKS).unwrap();
    let (r, n) = lookup(&c.routes, "9123").unwrap();
    assert_eq!((r.trunk, n.as_str()), (0, "123"));
    let (r, n) = lookup(&c.routes, "900123").unwrap();
    assert_eq!((r.trunk, n.as_str()), (1, "+44123"));
    assert!(lookup(&c.routes, "123").is_none());
    // Nothing left after the strip: no route.
    assert!(lookup(&c.routes, "9").is_none());
}

#[test]
fn routed_call_reaches_the_gateway_and_is_answered() {
    let mut h = trunk_h("trunk-route", "");
    let out = h.send(CARRIER, &call("9123", "tr-1"));
    assert_eq!(codes(&out), [100], "{:?}", summary(&out));
    assert_eq!(invites(&out), [(GW1.to_string(), format!("sip:123@{GW1}"))]);
    let inv = only(&out, "INVITE").1.clone();
    let ans = sdp("192.0.2.5", 50000, "");
    let out = h.send(GW1, &b_response(&inv, 200, "gw", Some(&ans)));
    assert_eq!(codes(&out), [200], "{:?}", summary(&out));
    assert_eq!(out[0].0.ip(), addr(CARRIER).ip());
    // The longer prefix goes to the other trunk, rewritten.
    let out = h.send(CARRIER, &call("900123", "tr-2"));
    assert_eq!(
        invites(&out),
        [(GW3.to_string(), format!("sip:+44123@{GW3}"))]
    );
}

#[test]
fn failover_on_503_is_invisible_to_the_caller() {
    let mut h = trunk_h("trunk-503", "");
    let out = h.send(CARRIER, &call("9123", "fo-1"));
    let inv = only(&out, "INVITE").1.clone();
    let out = h.send(GW1, &b_response(&inv, 503, "gw1", None));
    // ACK to the first gateway, the INVITE to the second; nothing to the caller.
    assert!(codes(&out).is_empty(), "{:?}", summary(&out));
    assert_eq!(only(&out, "ACK").0, addr(GW1));
    assert_eq!(invites(&out), [(GW2.to_string(), format!("sip:123@{GW2}"))]);
    let inv2 = only(&out, "INVITE").1.clone();
    assert_eq!(inv2.call_id, inv.call_id);
    assert!(inv2.cseq.num > inv.cseq.num);
    // A retransmitted 503 from the first gateway changes nothing.
    let out = h.send(GW1, &b_response(&inv, 503, "gw1", None));
    assert!(codes(&out).is_empty());
    // The second gateway fails too: the caller gets its answer.
    let out = h.send(GW2, &b_response(&inv2, 503, "gw2", None));
    assert_eq!(codes(&out), [503], "{:?}", summary(&out));
    assert_eq!(only(&out, "ACK").0, addr(GW2));
    assert_eq!(h.core.active_calls(), 0);
}

#[test]
fn failover_on_timer_b_then_408() {
    let mut h = trunk_h("trunk-tb", "");
    let out = h.send(CARRIER, &call("9123", "tb-1"));
    only(&out, "INVITE");
    let out = h.advance(Duration::from_secs(33));
    let inv = invites(&out);
    assert!(inv.iter().any(|(d, _)| d == GW2), "{inv:?}");
    assert!(codes(&out).is_empty(), "{:?}", summary(&out));
    let out = h.advance(Duration::from_secs(40));
    assert!(invites(&out).iter().all(|(d, _)| d == GW2));
    // 408 to the caller (retransmitted, as it sends no ACK here).
    let c = codes(&out);
    assert!(
        !c.is_empty() && c.iter().all(|&c| c == 408),
        "{:?}",
        summary(&out)
    );
    assert_eq!(h.core.active_calls(), 0);
}

#[test]
fn gateway_407_is_answered_once_with_the_trunk_credentials() {
    let mut h = trunk_h("trunk-407", "");
    let out = h.send(CARRIER, &call("9123", "au-1"));
    let inv = only(&out, "INVITE").1.clone();
    let chal = b_response(&inv, 407, "gw1", None).replacen(
        "Content-Length: 0",
        "Proxy-Authenticate: Digest realm=\"carrier\", nonce=\"n0nce\", algorithm=MD5, qop=\"auth\"\r\nContent-Length: 0",
        1,
    );
    let out = h.send(GW1, &chal);
    assert!(codes(&out).is_empty(), "{:?}", summary(&out));
    only(&out, "ACK");
    let (dest, inv2) = only(&out, "INVITE").clone();
    assert_eq!(dest, addr(GW1));
    assert_eq!(inv2.cseq.num, inv.cseq.num + 1);
    let cred = inv2.header("Proxy-Authorization").unwrap();
    let c = digest::parse_credentials(cred).unwrap();
    assert_eq!(
        (c.username.as_str(), c.realm.as_str(), c.uri.as_str()),
        ("tern", "carrier", "sip:123@127.0.0.1:5090")
    );
    let ha1 = digest::ha1(Algorithm::Md5, "tern", "carrier", "secret");
    assert_eq!(
        c.response,
        digest::expected_response_with(Algorithm::Md5, &ha1, "INVITE", &c)
    );
    // A second challenge is not answered again: the call fails over no more.
    let chal2 = b_response(&inv2, 407, "gw1b", None);
    let out = h.send(GW1, &chal2);
    assert_eq!(codes(&out), [407], "{:?}", summary(&out));
    assert!(invites(&out).is_empty());
}

#[test]
fn routes_need_an_authenticated_user_or_a_trusted_source() {
    // No users: an untrusted source may not use a route at all.
    let mut h = trunk_h("trunk-fraud0", "");
    let out = h.send(crate::core_tests::ALICE, &call("9123", "tf-0"));
    assert_eq!(codes(&out), [403], "{:?}", summary(&out));
    // Users, local calls open: a routed number is challenged anyway.
    let mut h = trunk_h("trunk-fraud", AUTH_USERS);
    h.core.cfg.auth_invites = Some(false);
    let out = h.send(crate::core_tests::ALICE, &call("9123", "tf-1"));
    assert_eq!(codes(&out), [407], "{:?}", summary(&out));
    assert!(invites(&out).is_empty());
    // With alice's credentials it goes out.
    let chal = only(&out, "407").1.clone();
    let uri = "sip:9123@127.0.0.1:5060";
    let good = answer_challenge(
        "Proxy-Authorization",
        &chal,
        "Proxy-Authenticate",
        Algorithm::Md5,
        "alice",
        "alicepw",
        "INVITE",
        uri,
        1,
    );
    let out = h.send(
        crate::core_tests::ALICE,
        &invite("9123", "tf-2", &good, &sdp("10.0.0.1", 40000, "")),
    );
    assert_eq!(invites(&out), [(GW1.to_string(), format!("sip:123@{GW1}"))]);
}

#[test]
fn trusted_trunk_source_calls_local_users_without_challenge() {
    let mut h = trunk_h("trunk-in", AUTH_USERS);
    h.register_bob_authenticated();
    // Local calls need authentication (users exist): alice is challenged...
    let out = h.send(crate::core_tests::ALICE, &call("bob", "in-1"));
    assert_eq!(codes(&out), [407]);
    // ...the carrier is not.
    let out = h.send(CARRIER, &call("bob", "in-2"));
    assert_eq!(codes(&out), [100], "{:?}", summary(&out));
    let (dest, _) = only(&out, "INVITE");
    assert_eq!(*dest, addr(crate::core_tests::BOB));
}

#[test]
fn transport_failure_tries_the_next_gateway() {
    let mut h = trunk_h("trunk-tf", "");
    let out = h.send(CARRIER, &call("9123", "tf-9"));
    only(&out, "INVITE");
    let now = h.now;
    h.core.transport_failed(addr(GW1), now);
    let out = h.drain();
    assert!(codes(&out).is_empty(), "{:?}", summary(&out));
    assert_eq!(invites(&out), [(GW2.to_string(), format!("sip:123@{GW2}"))]);
}
