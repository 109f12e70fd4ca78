//! The example web phone: serves tests/browser/phone.html (JsSIP over SIP
//! WebSocket, audio only) for a person with a browser, std::net only.
//!
//! ```sh
//! npm ci --prefix tests/browser      # once: JsSIP, bundled for the page
//! cargo run --release                # tern up: SIP over WS on 127.0.0.1:5066
//! cargo run --example webphone       # this: http://127.0.0.1:8089/
//! ```
//!
//! Open `http://127.0.0.1:8089/?user=alice&password=secret` (the page talks
//! to `ws://127.0.0.1:5066` unless `&ws=` says otherwise; `&call=bob` calls
//! bob once registered, `&answer=1` answers, `&auto=1` skips the button).
//! `cargo run --example webphone -- ADDR:PORT` serves elsewhere.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// The files the page needs: nothing else is served.
fn file(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/phone.html" => Some(("phone.html", "text/html; charset=utf-8")),
        "/phone.js" => Some(("phone.js", "text/javascript; charset=utf-8")),
        "/jssip.bundle.js" => Some(("jssip.bundle.js", "text/javascript; charset=utf-8")),
        _ => None,
    }
}

fn respond(s: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)
}

fn serve(mut s: TcpStream) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    // The headers: read and ignored (bounded: 100 lines).
    for _ in 0..100 {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = target.split('?').next().unwrap_or("/");
    if method != "GET" && method != "HEAD" {
        return respond(
            &mut s,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
        );
    }
    let Some((name, ctype)) = file(path) else {
        return respond(&mut s, "404 Not Found", "text/plain", b"not found\n");
    };
    match std::fs::read(dir().join(name)) {
        Ok(body) => respond(&mut s, "200 OK", ctype, &body),
        Err(e) => {
            let msg = format!(
                "{name}: {e}\nrun `npm ci --prefix tests/browser` (it bundles JsSIP into tests/browser/jssip.bundle.js)\n"
            );
            respond(
                &mut s,
                "500 Internal Server Error",
                "text/plain",
                msg.as_bytes(),
            )
        }
    }
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8089".into());
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| {
        eprintln!("webphone: cannot listen on {addr}: {e}");
        std::process::exit(1);
    });
    if !dir().join("jssip.bundle.js").exists() {
        eprintln!("webphone: tests/browser/jssip.bundle.js is missing: run `npm ci --prefix tests/browser` first");
    }
    println!("webphone: open http://{addr}/?user=alice&password=secret (SIP over ws://127.0.0.1:5066 unless &ws=...)");
    for conn in listener.incoming() {
        match conn {
            Ok(s) => {
                std::thread::spawn(move || {
                    if let Err(e) = serve(s) {
                        eprintln!("webphone: {e}");
                    }
                });
            }
            Err(e) => eprintln!("webphone: accept: {e}"),
        }
    }
}
