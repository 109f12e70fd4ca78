//! Abuse: no user enumeration (a REGISTER or INVITE naming an unknown
//! user gets the same challenge, and then the same 403, as one naming a
//! known user with a wrong password), and the answer to a stream request
//! over its source's rate (`crate::guard`).

use super::*;

/// What an observer can compare in a response: its status line, its
/// header names in order, and its challenges with the nonce (fresh each
/// time) masked.
fn shape(bytes: &[u8]) -> (String, Vec<String>, Vec<String>) {
    let text = String::from_utf8_lossy(bytes).to_string();
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default().to_string();
    let mut names = Vec::new();
    let mut challenges = Vec::new();
    for l in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = l.split_once(':').unwrap_or((l, ""));
        names.push(name.trim().to_ascii_lowercase());
        if name.ends_with("-Authenticate") {
            let masked: String = value
                .split(',')
                .map(|p| {
                    if p.trim_start().starts_with("nonce=") || p.contains(" nonce=") {
                        "nonce=*".to_string()
                    } else {
                        p.trim().to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(",");
            challenges.push(masked);
        }
    }
    (status, names, challenges)
}

/// Sends `text` from `from` and returns the shapes of the responses.
fn shapes(h: &mut H, from: &str, text: &str) -> Vec<(String, Vec<String>, Vec<String>)> {
    h.core.handle_datagram(text.as_bytes(), addr(from), h.now);
    let mut v = Vec::new();
    while let Some((_, b)) = h.core.poll_transmit() {
        v.push(shape(&b));
    }
    v
}

/// The one response of `out` with `code`, parsed.
fn the(h: &mut H, from: &str, text: &str, code: u16) -> Msg {
    let out = h.send(from, text);
    only(&out, &code.to_string()).1.clone()
}

#[test]
fn unknown_users_get_the_same_challenge_and_403_as_known_ones() {
    let users = "[[users]]\nname = \"bob\"\npassword = \"s3cret\"\n";
    let mut h = H::new("enum", 16, users);
    // REGISTER: the challenge.
    let known = shapes(&mut h, BOB, &register("bob", 1, ""));
    let unknown = shapes(&mut h, BOB, &register("mallory", 1, ""));
    assert_eq!(known.len(), 1);
    assert!(known[0].0.starts_with("SIP/2.0 401"), "{known:?}");
    assert_eq!(known[0].2.len(), 2, "MD5 and SHA-256: {known:?}");
    assert_eq!(known, unknown);
    // REGISTER: a wrong password of bob, any password of mallory.
    let chal = the(&mut h, BOB, &register("bob", 2, ""), 401);
    let bad = authorization(
        "Authorization",
        &chal,
        "WWW-Authenticate",
        "bob",
        "wrong",
        "REGISTER",
    );
    let known = shapes(&mut h, BOB, &register("bob", 3, &bad));
    let chal = the(&mut h, BOB, &register("mallory", 2, ""), 401);
    let any = authorization(
        "Authorization",
        &chal,
        "WWW-Authenticate",
        "mallory",
        "s3cret",
        "REGISTER",
    );
    let unknown = shapes(&mut h, BOB, &register("mallory", 3, &any));
    assert_eq!(known.len(), 1);
    assert!(known[0].0.starts_with("SIP/2.0 403"), "{known:?}");
    assert_eq!(known, unknown);

    // INVITE: the proxy challenge, for a known or an unknown callee.
    let body = sdp("10.0.0.1", 40000, "");
    let known = shapes(&mut h, ALICE, &invite("bob", "e1", "", &body));
    let unknown = shapes(&mut h, ALICE, &invite("nobody", "e2", "", &body));
    assert_eq!(known.len(), 1);
    assert!(known[0].0.starts_with("SIP/2.0 407"), "{known:?}");
    assert_eq!(known, unknown);
    // INVITE: a wrong password of bob, any password of an unknown caller.
    let chal = the(&mut h, ALICE, &invite("bob", "e3", "", &body), 407);
    let bad = authorization(
        "Proxy-Authorization",
        &chal,
        "Proxy-Authenticate",
        "bob",
        "wrong",
        "INVITE",
    )
    .replace("sip:127.0.0.1:5060", "sip:bob@127.0.0.1:5060");
    let known = shapes(&mut h, ALICE, &invite("bob", "e4", &bad, &body));
    let chal = the(&mut h, ALICE, &invite("bob", "e5", "", &body), 407);
    let any = authorization(
        "Proxy-Authorization",
        &chal,
        "Proxy-Authenticate",
        "mallory",
        "x",
        "INVITE",
    )
    .replace("sip:127.0.0.1:5060", "sip:bob@127.0.0.1:5060");
    let unknown = shapes(&mut h, ALICE, &invite("bob", "e6", &any, &body));
    assert_eq!(known.len(), 1);
    assert!(known[0].0.starts_with("SIP/2.0 403"), "{known:?}");
    assert_eq!(known, unknown);
    let st = h.core.stats();
    assert_eq!(st.auth_failures, 4);
}

#[test]
fn a_request_over_the_rate_is_answered_503_with_retry_after_but_not_an_ack() {
    let mut h = H::new("overload", 16, "");
    let src = crate::transport::Source::udp(addr(BOB));
    h.core
        .refuse_overloaded(register("bob", 1, "").as_bytes(), src, 1);
    let out = h.drain();
    let (_, r) = only(&out, "503");
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert!(h.core.location().lookup_user("bob", h.now).is_empty());
    let ack = a_request("ACK", "c1", 1, "", "z9hG4bKack");
    h.core.refuse_overloaded(ack.as_bytes(), src, 1);
    h.core.refuse_overloaded(b"SIP/2.0 200 OK\r\n\r\n", src, 1);
    h.core.refuse_overloaded(b"\x00garbage", src, 1);
    assert!(h.drain().is_empty());
}
