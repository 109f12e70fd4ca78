//! `tern ctl`: a command-line client of the HTTP API.
//!
//! - `tern ctl calls`: one line per live call.
//! - `tern ctl call CALL-ID`: statistics per slot of the call and leg.
//! - `tern ctl dtmf CALL-ID`: one line per RFC 4733 event: digit, duration
//!   (ms), the time the event ended (RFC 3339, UTC), the leg and slot.
//!
//! The client speaks HTTP/1.0 with `Connection: close` over a plain
//! `TcpStream`: one GET to a local API needs no HTTP client crate.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, UNIX_EPOCH};

use clap::{Args, Subcommand};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

/// Largest response read, bytes.
const MAX_RESPONSE: u64 = 16 << 20;
const TIMEOUT: Duration = Duration::from_secs(5);
/// Characters left as they are in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `tern ctl` arguments.
#[derive(Args, Debug, Clone)]
pub struct CtlArgs {
    /// The HTTP API of the tern to ask (`--http` of `tern up`/`relay`/`sip`).
    #[arg(
        long,
        global = true,
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http: String,
    #[command(subcommand)]
    /// What to show.
    pub cmd: CtlCmd,
}

/// `tern ctl` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum CtlCmd {
    /// List live calls.
    Calls,
    /// Show one call's statistics per leg.
    Call {
        /// The caller's Call-ID.
        call_id: String,
    },
    /// List one call's DTMF events (RFC 4733).
    Dtmf {
        /// The caller's Call-ID.
        call_id: String,
    },
}

/// Errors of `tern ctl`.
#[derive(Debug)]
pub enum CtlError {
    /// `--http` did not name an address.
    Addr(String),
    /// No connection to the API (e.g. refused: tern not running, or
    /// running with `--http off`).
    Connect(String, std::io::Error),
    /// The exchange failed midway.
    Io(std::io::Error),
    /// No call has that Call-ID (HTTP 404).
    NoSuchCall(String),
    /// Another non-200 status, with the body.
    Status(u16, String),
    /// The response was not what the API sends.
    BadResponse(String),
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::Addr(a) => write!(f, "--http {a:?}: not an address (expected HOST:PORT)"),
            CtlError::Connect(a, e) => write!(
                f,
                "cannot reach the tern HTTP API at {a}: {e} (is tern running, with --http {a}?)"
            ),
            CtlError::Io(e) => write!(f, "HTTP exchange failed: {e}"),
            CtlError::NoSuchCall(id) => write!(f, "no call with Call-ID {id:?}"),
            CtlError::Status(s, b) => write!(f, "HTTP {s}: {}", b.trim()),
            CtlError::BadResponse(m) => write!(f, "bad response from the API: {m}"),
        }
    }
}

impl std::error::Error for CtlError {}

/// GETs `path` from the API at `addr`: (status, body).
///
/// Errors: [`CtlError::Addr`], [`CtlError::Connect`], [`CtlError::Io`],
/// [`CtlError::BadResponse`].
pub fn get(addr: &str, path: &str) -> Result<(u16, String), CtlError> {
    let sa: SocketAddr = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| CtlError::Addr(addr.into()))?;
    let mut s =
        TcpStream::connect_timeout(&sa, TIMEOUT).map_err(|e| CtlError::Connect(addr.into(), e))?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(CtlError::Io)?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(CtlError::Io)?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(CtlError::Io)?;
    let mut buf = Vec::new();
    s.take(MAX_RESPONSE)
        .read_to_end(&mut buf)
        .map_err(CtlError::Io)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| CtlError::BadResponse("no end of headers".into()))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| CtlError::BadResponse(format!("status line {:?}", head.lines().next())))?;
    Ok((status, body.to_string()))
}

fn get_json(addr: &str, path: &str) -> Result<Value, CtlError> {
    let (status, body) = get(addr, path)?;
    if status != 200 {
        return Err(CtlError::Status(status, body));
    }
    serde_json::from_str(&body).map_err(|e| CtlError::BadResponse(e.to_string()))
}

fn get_call(addr: &str, call_id: &str) -> Result<Value, CtlError> {
    let path = format!("/calls/{}", utf8_percent_encode(call_id, SEGMENT));
    match get_json(addr, &path) {
        Err(CtlError::Status(404, _)) => Err(CtlError::NoSuchCall(call_id.into())),
        r => r,
    }
}

/// Runs `args`, writing the result to `out`.
///
/// Errors: those of [`get`], [`CtlError::NoSuchCall`], [`CtlError::Status`].
pub fn run(args: &CtlArgs, out: &mut dyn Write) -> Result<(), CtlError> {
    let text = match &args.cmd {
        CtlCmd::Calls => format_calls(&get_json(&args.http, "/calls")?),
        CtlCmd::Call { call_id } => format_call(&get_call(&args.http, call_id)?),
        CtlCmd::Dtmf { call_id } => format_dtmf(&get_call(&args.http, call_id)?),
    };
    out.write_all(text.as_bytes()).map_err(CtlError::Io)
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("-")
}

fn opt_f(v: &Value, k: &str, prec: usize) -> String {
    v.get(k)
        .and_then(Value::as_f64)
        .map_or("-".into(), |x| format!("{x:.prec$}"))
}

/// `calls`: a header and one line per call (`/calls`' shape:
/// `{calls: [...], total, truncated}`), and how many were left out.
pub fn format_calls(v: &Value) -> String {
    let calls = v
        .get("calls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if calls.is_empty() && u(v, "total") == 0 {
        return "no calls\n".into();
    }
    let mut o = format!(
        "{:>5}  {:<40}  {:<9}  {:>17}  {:>17}\n",
        "SLOT", "CALL-ID", "STATE", "LEG0 RX/TX", "LEG1 RX/TX"
    );
    for c in calls {
        let legs = c.get("legs").and_then(Value::as_array);
        let leg = |i: usize| {
            legs.and_then(|l| l.get(i)).map_or("-".into(), |l| {
                format!("{}/{}", u(l, "rx_packets"), u(l, "tx_packets"))
            })
        };
        o += &format!(
            "{:>5}  {:<40}  {:<9}  {:>17}  {:>17}\n",
            u(c, "slot"),
            s(c, "call_id"),
            s(c, "state"),
            leg(0),
            leg(1)
        );
    }
    if v.get("truncated").and_then(Value::as_bool) == Some(true) {
        o += &format!("({} of {} calls shown)\n", calls.len(), u(v, "total"));
    }
    o
}

/// `call`: the call's Call-ID, then for each of its slots the slot's
/// identity and per leg packets, bytes, drops and quality (the shape of
/// `/calls/{call-id}`: `{call_id, slots: [...], dtmf: [...]}`).
pub fn format_call(c: &Value) -> String {
    let mut o = format!("call {}\n", s(c, "call_id"));
    for slot in c
        .get("slots")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        o += &format_slot(slot);
    }
    let n = c.get("dtmf").and_then(Value::as_array).map_or(0, Vec::len);
    o += &format!("dtmf events {n}\n");
    o
}

fn format_slot(c: &Value) -> String {
    let mut o = format!(
        "slot {}  worker {}  state {}",
        u(c, "slot"),
        u(c, "worker"),
        s(c, "state")
    );
    if let Some(st) = c.get("sip_state").and_then(Value::as_str) {
        o += &format!(" (sip {st})");
    }
    o.push('\n');
    for l in c
        .get("legs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let d = l.get("drops").cloned().unwrap_or(Value::Null);
        o += &format!(
            "leg {}  port {}  peer {}\n  packets rx {} tx {}  bytes rx {} tx {}  rtcp rx {}\n  drops source {} direction {} malformed {} no-peer {} jitter-late {} jitter-overflow {}\n",
            u(l, "leg"),
            u(l, "local_rtp_port"),
            s(l, "peer"),
            u(l, "rx_packets"),
            u(l, "tx_packets"),
            u(l, "rx_bytes"),
            u(l, "tx_bytes"),
            u(l, "rtcp_rx_packets"),
            u(&d, "source"),
            u(&d, "direction"),
            u(&d, "malformed"),
            u(&d, "no_peer"),
            u(&d, "jitter_late"),
            u(&d, "jitter_overflow"),
        );
        if let Some(t) = l.get("transport").and_then(Value::as_str) {
            o += &format!("  transport {t}  profile {}", s(l, "profile"));
        }
        o += &format!("  ice {}  dtls {}\n", s(l, "ice"), s(l, "dtls"));
        match l.get("quality").filter(|q| !q.is_null()) {
            Some(q) => {
                let lost = q.get("lost").and_then(Value::as_i64).unwrap_or(0);
                let frac = q
                    .get("fraction_lost")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                o += &format!(
                    "  loss {lost} of {} ({:.1} %)  jitter {} ms  MOS {}  rtt {} ms  duplicates {}  reordered {}\n",
                    u(q, "expected"),
                    frac * 100.0,
                    opt_f(q, "jitter_ms", 2),
                    opt_f(q, "mos", 2),
                    opt_f(q, "rtt_ms", 1),
                    u(q, "duplicates"),
                    u(q, "reordered"),
                );
            }
            None => o += "  no RTP received yet\n",
        }
    }
    o
}

/// `dtmf`: one line per event, `DIGIT  DURATION ms  TIME  leg N`.
pub fn format_dtmf(c: &Value) -> String {
    let mut o = String::new();
    for e in c
        .get("dtmf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let at = UNIX_EPOCH + Duration::from_millis(u(e, "at_ms"));
        o += &format!(
            "{}  {:.0} ms  {}  leg {}  slot {}\n",
            s(e, "digit"),
            e.get("duration_ms").and_then(Value::as_f64).unwrap_or(0.0),
            humantime::format_rfc3339_millis(at),
            u(e, "leg"),
            u(e, "slot"),
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_lines() {
        let v: Value = serde_json::from_str(
            r#"{"dtmf":[{"slot":7,"leg":0,"digit":"1","event":1,"duration":800,"duration_ms":100.0,"rtp_timestamp":5,"at_ms":1000}]}"#,
        )
        .unwrap();
        assert_eq!(
            format_dtmf(&v),
            "1  100 ms  1970-01-01T00:00:01.000Z  leg 0  slot 7\n"
        );
        let none: Value =
            serde_json::from_str(r#"{"calls":[],"total":0,"truncated":false}"#).unwrap();
        assert_eq!(format_calls(&none), "no calls\n");
        let cut: Value = serde_json::from_str(
            r#"{"calls":[{"slot":3,"call_id":"x","state":"active","legs":[]}],"total":9,"truncated":true}"#,
        )
        .unwrap();
        assert!(
            format_calls(&cut).ends_with("(1 of 9 calls shown)\n"),
            "{}",
            format_calls(&cut)
        );
    }

    #[test]
    fn a_leg_shows_its_transport_profile_ice_and_dtls() {
        let v: Value = serde_json::from_str(
            r#"{"slot":2,"worker":0,"state":"active","legs":[{"leg":0,"local_rtp_port":20000,"peer":"192.0.2.1:4000","rx_packets":1,"tx_packets":2,"rx_bytes":3,"tx_bytes":4,"rtcp_rx_packets":0,"drops":{},"quality":null,"transport":"wss","profile":"UDP/TLS/RTP/SAVPF","ice":"lite, nominated","dtls":"connected"},{"leg":1,"local_rtp_port":20002,"peer":null,"rx_packets":0,"tx_packets":0,"rx_bytes":0,"tx_bytes":0,"rtcp_rx_packets":0,"drops":{},"quality":null,"ice":"off","dtls":"off"}]}"#,
        )
        .unwrap();
        let out = format_slot(&v);
        assert!(
            out.contains(
                "  transport wss  profile UDP/TLS/RTP/SAVPF  ice lite, nominated  dtls connected\n"
            ),
            "{out}"
        );
        assert!(out.contains("  ice off  dtls off\n"), "{out}");
    }

    #[test]
    fn call_ids_are_percent_encoded_as_one_segment() {
        let e = utf8_percent_encode("a1/b@127.0.0.1 x", SEGMENT).to_string();
        assert_eq!(e, "a1%2Fb%40127.0.0.1%20x");
    }

    #[test]
    fn refused_connection_is_a_clear_error() {
        // A port just freed is almost surely closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let err = get(&format!("127.0.0.1:{port}"), "/calls").unwrap_err();
        assert!(matches!(err, CtlError::Connect(..)), "{err}");
        assert!(err.to_string().contains("cannot reach"), "{err}");
    }
}
