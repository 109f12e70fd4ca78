//! The registrar and digest authentication of `tern up` over real UDP on
//! loopback (issue 5): SIPp answers the 401 challenge with MD5, a wrong
//! password is refused, two contacts of one AOR are both listed in the
//! 200, a REGISTER over TCP is challenged the same way, and `Contact: *`
//! with `Expires: 0` clears them. A small Rust UA
//! checks the listings, answering the SHA-256 challenge (RFC 8760).
//!
//! Ports: SIP 15580 (UDP and TCP), SIPp 16500-16509, raw UA 16510, relay
//! 27500-27599, instance `t-h5-reg-PID`.

mod common;
use common::*;

use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use tern_signaling::digest::{expected_response_with, ha1, Algorithm, Credentials};

const TERN_SIP: &str = "127.0.0.1:15580";
const USERS: &str = "[sip]\nrealm = \"tern\"\n\n[[users]]\nname = \"alice\"\npassword = \"alicepw\"\n\n[[users]]\nname = \"bob\"\npassword = \"bobpw\"\n";

/// REGISTER answered with a wrong password: the scenario passes only if
/// tern answers the credentials with 403 or a fresh 401.
const WRONG_PASSWORD_XML: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="register with a wrong password">
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[remote_ip]>;tag=[pid]bad[call_number]
      To: <sip:[service]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Expires: 3600
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[remote_ip]>;tag=[pid]bad[call_number]
      To: <sip:[service]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      [authentication]
      Max-Forwards: 70
      Expires: 3600
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" optional="true" next="done"/>
  <recv response="403"/>
  <label id="done"/>
</scenario>
"#;

/// `Contact: *` with `Expires: 0` after the 401 round trip; passes on 200.
const UNREGISTER_ALL_XML: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="remove every binding">
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[remote_ip]>;tag=[pid]star[call_number]
      To: <sip:[service]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: *
      Max-Forwards: 70
      Expires: 0
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[remote_ip]>;tag=[pid]star[call_number]
      To: <sip:[service]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: *
      [authentication]
      Max-Forwards: 70
      Expires: 0
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"#;

/// Runs SIPp once (`-m 1`) as `user` with `password` from `local_port`
/// over UDP.
fn sipp_register(
    dir: &Path,
    scenario: &Path,
    user: &str,
    password: &str,
    local_port: u16,
    contact: &str,
) -> bool {
    sipp_register_over(dir, scenario, user, password, local_port, contact, "u1")
}

/// [`sipp_register`] over SIPp transport `transport` (`u1`, `t1`).
fn sipp_register_over(
    dir: &Path,
    scenario: &Path,
    user: &str,
    password: &str,
    local_port: u16,
    contact: &str,
    transport: &str,
) -> bool {
    let port = local_port.to_string();
    sipp_run(
        &[
            "-t",
            transport,
            TERN_SIP,
            "-sf",
            scenario.to_str().unwrap(),
            "-s",
            user,
            "-au",
            user,
            "-ap",
            password,
            "-key",
            "contact",
            contact,
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-m",
            "1",
            "-timeout",
            "15s",
            "-timeout_error",
        ],
        dir,
        Duration::from_secs(20),
    )
}

/// A minimal UA on a loopback socket that registers with SHA-256 digest.
struct Ua {
    sock: UdpSocket,
    call_id: String,
    cseq: u32,
}

/// The status code and header lines of a response.
struct Resp {
    code: u16,
    headers: Vec<(String, String)>,
}

impl Resp {
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn parse_resp(data: &[u8]) -> Option<Resp> {
    let text = std::str::from_utf8(data).ok()?;
    let mut lines = text.split("\r\n");
    let code = lines
        .next()?
        .strip_prefix("SIP/2.0 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Resp { code, headers })
}

impl Ua {
    fn new(port: u16) -> Ua {
        let sock = UdpSocket::bind(("127.0.0.1", port)).expect("bind UA");
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        Ua {
            sock,
            call_id: format!("ua-{}@127.0.0.1", std::process::id()),
            cseq: 0,
        }
    }

    /// Sends one REGISTER for `user` with `extra` header lines and returns
    /// the final response (bounded: 4 sends, 500 ms apart).
    fn request(&mut self, user: &str, extra: &str) -> Resp {
        self.cseq += 1;
        let port = self.sock.local_addr().unwrap().port();
        let msg = format!(
            "REGISTER sip:{TERN_SIP} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKua{}\r\n\
             From: <sip:{user}@127.0.0.1>;tag=ua1\r\n\
             To: <sip:{user}@127.0.0.1>\r\n\
             Call-ID: {}\r\n\
             CSeq: {} REGISTER\r\n\
             Max-Forwards: 70\r\n\
             {extra}Content-Length: 0\r\n\r\n",
            self.cseq, self.call_id, self.cseq
        );
        let mut buf = [0u8; 65535];
        for _ in 0..4 {
            self.sock.send_to(msg.as_bytes(), TERN_SIP).unwrap();
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                    break;
                };
                let Some(r) = parse_resp(&buf[..n]) else {
                    continue;
                };
                let cseq = r.all("CSeq").first().map(|c| c.to_string());
                if r.code >= 200 && cseq == Some(format!("{} REGISTER", self.cseq)) {
                    return r;
                }
            }
        }
        panic!("no response to REGISTER {}", self.cseq);
    }

    /// REGISTER with the 401 round trip answered with SHA-256.
    fn register(&mut self, user: &str, password: &str, extra: &str) -> Resp {
        let r = self.request(user, extra);
        assert_eq!(r.code, 401, "expected a challenge");
        let chals = r.all("WWW-Authenticate");
        assert_eq!(chals.len(), 2, "{chals:?}");
        assert!(chals[0].contains("algorithm=MD5"), "MD5 first: {chals:?}");
        let sha = chals
            .iter()
            .find(|c| c.contains("algorithm=SHA-256"))
            .expect("a SHA-256 challenge");
        let nonce = sha
            .split("nonce=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("nonce");
        let uri = format!("sip:{TERN_SIP}");
        let mut c = Credentials {
            username: user.into(),
            realm: "tern".into(),
            nonce: nonce.into(),
            uri: uri.clone(),
            cnonce: Some("abcdef".into()),
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            ..Default::default()
        };
        let h = ha1(Algorithm::Sha256, user, "tern", password);
        c.response = expected_response_with(Algorithm::Sha256, &h, "REGISTER", &c);
        let auth = format!(
            "Authorization: Digest username=\"{user}\", realm=\"tern\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{}\", algorithm=SHA-256, cnonce=\"abcdef\", qop=auth, nc=00000001\r\n",
            c.response
        );
        self.request(user, &format!("{extra}{auth}"))
    }
}

/// The Contact URIs listed in a 200 to REGISTER.
fn listed(r: &Resp) -> Vec<String> {
    let mut v: Vec<String> = r
        .all("Contact")
        .iter()
        .flat_map(|c| c.split(','))
        .filter_map(|c| {
            let c = c.trim();
            Some(c.strip_prefix('<')?.split_once('>')?.0.to_string())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn register_with_digest_contacts_and_star() {
    let instance = format!("t-h5-reg-{}", std::process::id());
    let dir = sipp_workdir("sip-register");
    let config = dir.join("users.toml");
    std::fs::write(&config, USERS).unwrap();
    let wrong = dir.join("wrong_password.xml");
    std::fs::write(&wrong, WRONG_PASSWORD_XML).unwrap();
    let star = dir.join("unregister_all.xml");
    std::fs::write(&star, UNREGISTER_ALL_XML).unwrap();
    let (mut tern, _) = spawn_tern(
        &[
            "up",
            "--sip",
            TERN_SIP,
            "--config",
            config.to_str().unwrap(),
            "--ports",
            "27500-27599",
            "--workers",
            "1",
            "--instance",
            &instance,
            "--ng",
            "off",
            "--http",
            "off",
        ],
        &["tern sip: listening"],
    );
    let register_xml = scenario("register.xml");

    // SIPp answers the 401 with MD5 and gets its 200.
    assert!(
        sipp_register(
            &dir,
            &register_xml,
            "alice",
            "alicepw",
            16500,
            "127.0.0.1:16501"
        ),
        "REGISTER with MD5 digest failed"
    );
    // A wrong password: 403 (or 401 again), never 200.
    assert!(
        sipp_register(
            &dir,
            &wrong,
            "alice",
            "not-her-password",
            16502,
            "127.0.0.1:16503"
        ),
        "a wrong password was not refused with 403 or 401"
    );
    // A second phone of alice: both contacts listed.
    assert!(
        sipp_register(
            &dir,
            &register_xml,
            "alice",
            "alicepw",
            16504,
            "127.0.0.1:16505"
        ),
        "second REGISTER failed"
    );
    let mut ua = Ua::new(16510);
    let r = ua.register("alice", "alicepw", "");
    assert_eq!(r.code, 200);
    assert_eq!(
        listed(&r),
        [
            "sip:alice@127.0.0.1:16501".to_string(),
            "sip:alice@127.0.0.1:16505".to_string()
        ]
    );
    assert!(
        r.all("Contact").iter().all(|c| c.contains("expires=")),
        "{:?}",
        r.all("Contact")
    );
    // The wrong-password attempt bound nothing, and bob has no bindings.
    let r = ua.register("bob", "bobpw", "");
    assert_eq!(r.code, 200);
    assert!(listed(&r).is_empty());
    // bob registers over TCP, with the same challenge.
    assert!(
        sipp_register_over(
            &dir,
            &register_xml,
            "bob",
            "bobpw",
            16508,
            "127.0.0.1:16509",
            "t1"
        ),
        "REGISTER over TCP failed"
    );
    let r = ua.register("bob", "bobpw", "");
    assert_eq!(listed(&r), ["sip:bob@127.0.0.1:16509".to_string()]);
    // The UA adds its own contact: three listed.
    let r = ua.register(
        "alice",
        "alicepw",
        "Contact: <sip:alice@127.0.0.1:16510>;expires=120\r\n",
    );
    assert_eq!(r.code, 200);
    assert_eq!(listed(&r).len(), 3);
    // A wrong password from the UA: 403.
    let r = ua.register("alice", "bobpw", "");
    assert_eq!(r.code, 403);

    // Contact: * with Expires: 0 from SIPp clears every binding of alice.
    assert!(
        sipp_register(&dir, &star, "alice", "alicepw", 16506, "127.0.0.1:16507"),
        "Contact: * failed"
    );
    let r = ua.register("alice", "alicepw", "");
    assert_eq!(r.code, 200);
    assert!(listed(&r).is_empty(), "{:?}", listed(&r));
    // `Contact: *` without Expires: 0 is a 400.
    let r = ua.register("alice", "alicepw", "Contact: *\r\n");
    assert_eq!(r.code, 400);
    tern.stop();
    unlink_table(&instance);
}
