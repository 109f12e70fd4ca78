//! The digest `uri` check of `tern up` over real UDP on loopback (RFC 2617
//! §3.2.2.5, RFC 7616 §3.4.6): a REGISTER whose credentials carry a
//! correct response, computed for another uri than its Request-URI, gets
//! 400; the same credentials computed for the Request-URI (written with
//! another case) get 200.
//!
//! Ports: SIP 15800, raw UA 15801, relay 32000-32099, instance
//! `t-digest-uri-PID`; no ng, no HTTP.

mod common;
use common::*;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use tern_signaling::digest::{expected_response, md5_hex, Credentials};

const TERN_SIP: &str = "127.0.0.1:15800";
const UA: &str = "127.0.0.1:15801";
const USERS: &str =
    "[sip]\nrealm = \"tern\"\n\n[[users]]\nname = \"alice\"\npassword = \"alicepw\"\n";

/// A REGISTER for alice from [`UA`], CSeq `cseq`, with `extra` header lines.
fn register(cseq: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:{TERN_SIP} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {UA};branch=z9hG4bKdu{cseq}\r\n\
         From: <sip:alice@127.0.0.1>;tag=du1\r\n\
         To: <sip:alice@127.0.0.1>\r\n\
         Call-ID: digest-uri-{}@127.0.0.1\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:alice@{UA}>\r\n\
         Max-Forwards: 70\r\n\
         {extra}Content-Length: 0\r\n\r\n",
        std::process::id()
    )
}

/// Sends `msg` and returns the text of the final response to CSeq `cseq`
/// (bounded: 4 sends, 500 ms apart).
fn exchange(sock: &UdpSocket, msg: &str, cseq: u32) -> String {
    let mut buf = [0u8; 65535];
    for _ in 0..4 {
        sock.send_to(msg.as_bytes(), TERN_SIP).unwrap();
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                break;
            };
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let fin = text
                .get(8..11)
                .and_then(|c| c.parse::<u16>().ok())
                .is_some_and(|c| c >= 200);
            if fin && text.contains(&format!("CSeq: {cseq} REGISTER")) {
                return text;
            }
        }
    }
    panic!("no final response to REGISTER {cseq}");
}

/// An MD5 `Authorization` line for alice over `nonce`, hashed for `uri`.
fn authorization(nonce: &str, uri: &str, nc: u32) -> String {
    let nc = format!("{nc:08x}");
    let mut c = Credentials {
        username: "alice".into(),
        realm: "tern".into(),
        nonce: nonce.into(),
        uri: uri.into(),
        cnonce: Some("5eed".into()),
        qop: Some("auth".into()),
        nc: Some(nc.clone()),
        ..Default::default()
    };
    c.response = expected_response(&md5_hex("alice:tern:alicepw"), "REGISTER", &c);
    format!(
        "Authorization: Digest username=\"alice\", realm=\"tern\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{}\", algorithm=MD5, cnonce=\"5eed\", qop=auth, nc={nc}\r\n",
        c.response
    )
}

#[test]
fn digest_uri_for_another_resource_gets_400() {
    let instance = format!("t-digest-uri-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("tern-digest-uri-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("users.toml");
    std::fs::write(&config, USERS).unwrap();
    let mut tern = spawn_sip_node(
        TERN_SIP,
        "32000-32099",
        &instance,
        &["--config", config.to_str().unwrap()],
    );
    let sock = UdpSocket::bind(UA).expect("bind UA");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();

    let chal = exchange(&sock, &register(1, ""), 1);
    assert!(chal.starts_with("SIP/2.0 401"), "{chal}");
    let nonce = chal
        .split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("nonce")
        .to_string();

    // A right response for another resource: 400, and no binding.
    let auth = authorization(&nonce, "sip:elsewhere.example.com", 1);
    let r = exchange(&sock, &register(2, &auth), 2);
    assert!(r.starts_with("SIP/2.0 400"), "{r}");
    assert!(r.contains("digest uri"), "{r}");

    // The Request-URI itself, its scheme written in upper case: 200.
    let auth = authorization(&nonce, &format!("SIP:{TERN_SIP}"), 2);
    let r = exchange(&sock, &register(3, &auth), 3);
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(r.contains(&format!("<sip:alice@{UA}>")), "{r}");

    tern.stop();
    unlink_table(&instance);
    let _ = std::fs::remove_dir_all(&dir);
}
