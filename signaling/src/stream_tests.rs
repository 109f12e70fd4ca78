//! The stream codec against real clients over memory: tungstenite's
//! client for WebSocket, rustls's for TLS.

use super::*;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::protocol::Role;

const REGISTER: &str = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKnashds7\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";

fn limits() -> Limits {
    Limits {
        max_message: 4096,
        ..Limits::default()
    }
}

/// A tungstenite client over a pipe, opened against `codec`.
fn ws_client(
    codec: &mut StreamCodec,
    now: Instant,
    proto: Option<&str>,
) -> Result<WebSocket<Pipe>, StreamClose> {
    let mut req = "ws://127.0.0.1:5066/".into_client_request().unwrap();
    if let Some(p) = proto {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
    }
    let mut mid = match ClientHandshake::start(Pipe::default(), req, None)
        .unwrap()
        .handshake()
    {
        Err(HandshakeError::Interrupted(m)) => m,
        _ => panic!("client handshake should wait for the server"),
    };
    let out = std::mem::take(&mut mid.get_mut().get_mut().tx);
    codec.on_wire(&out, now)?;
    let answer = codec.take_wire();
    mid.get_mut().get_mut().rx.extend_from_slice(&answer);
    match mid.handshake() {
        Ok((ws, resp)) => {
            assert_eq!(resp.headers().get("Sec-WebSocket-Protocol").unwrap(), "sip");
            Ok(ws)
        }
        Err(e) => panic!("client handshake failed: {e}"),
    }
}

fn to_codec(
    ws: &mut WebSocket<Pipe>,
    codec: &mut StreamCodec,
    m: Message,
    now: Instant,
) -> Result<(), StreamClose> {
    ws.send(m).unwrap();
    let out = std::mem::take(&mut ws.get_mut().tx);
    codec.on_wire(&out, now)
}

fn from_codec(ws: &mut WebSocket<Pipe>, codec: &mut StreamCodec) -> Vec<Message> {
    let wire = codec.take_wire();
    ws.get_mut().rx.extend_from_slice(&wire);
    let mut got = Vec::new();
    while let Ok(m) = ws.read() {
        got.push(m);
    }
    got
}

#[test]
fn tcp_frames_messages_and_answers_keepalives() {
    let now = Instant::now();
    let mut c = StreamCodec::new(StreamKind::Tcp, None, limits(), now);
    assert!(c.established());
    let mut two = REGISTER.as_bytes().to_vec();
    two.extend_from_slice(b"\r\n\r\n");
    two.extend_from_slice(&REGISTER.as_bytes()[..40]);
    c.on_wire(&two, now).unwrap();
    assert_eq!(
        c.poll_event(),
        Some(StreamEvent::Message(REGISTER.as_bytes().to_vec()))
    );
    assert_eq!(c.poll_event(), Some(StreamEvent::KeepAlive));
    assert_eq!(c.poll_event(), None);
    assert!(c.send_raw(PONG));
    assert_eq!(c.take_wire(), PONG);
    c.on_wire(&REGISTER.as_bytes()[40..], now).unwrap();
    assert!(matches!(c.poll_event(), Some(StreamEvent::Message(_))));
    assert!(c.send(b"SIP/2.0 200 OK\r\n\r\n"));
    assert_eq!(c.take_wire(), b"SIP/2.0 200 OK\r\n\r\n");
    let e = c.on_wire(b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n", now);
    assert!(matches!(e, Err(StreamClose::Unframed { .. })), "{e:?}");
}

#[test]
fn websocket_carries_one_sip_message_per_message() {
    let now = Instant::now();
    let mut c = StreamCodec::new(StreamKind::Ws, None, limits(), now);
    assert!(!c.established());
    assert!(!c.send(b"early"), "nothing goes out before the handshake");
    let mut ws = ws_client(&mut c, now, Some("sip")).unwrap();
    assert!(c.established());
    to_codec(&mut ws, &mut c, Message::Text(REGISTER.into()), now).unwrap();
    assert_eq!(
        c.poll_event(),
        Some(StreamEvent::Message(REGISTER.as_bytes().to_vec()))
    );
    // Binary frames too (RFC 7118 §5.1).
    to_codec(&mut ws, &mut c, Message::Binary(REGISTER.into()), now).unwrap();
    assert!(matches!(c.poll_event(), Some(StreamEvent::Message(_))));
    assert!(c.send(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
    let got = from_codec(&mut ws, &mut c);
    assert_eq!(
        got,
        vec![Message::Text(
            "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n".into()
        )]
    );
    // A client ping gets a pong; a CRLFCRLF keep-alive gets CRLF.
    to_codec(&mut ws, &mut c, Message::Ping(b"x".to_vec()), now).unwrap();
    to_codec(&mut ws, &mut c, Message::Text("\r\n\r\n".into()), now).unwrap();
    assert_eq!(c.poll_event(), None);
    let got = from_codec(&mut ws, &mut c);
    assert!(got.contains(&Message::Pong(b"x".to_vec())), "{got:?}");
    assert!(got.contains(&Message::Text("\r\n".into())), "{got:?}");
    // A close frame from the client ends it.
    let e = to_codec(&mut ws, &mut c, Message::Close(None), now);
    assert_eq!(e, Err(StreamClose::PeerClosed));
}

#[test]
fn websocket_without_the_sip_subprotocol_is_refused() {
    let now = Instant::now();
    let mut c = StreamCodec::new(StreamKind::Ws, None, limits(), now);
    let mut req = "ws://127.0.0.1:5066/".into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("chat"));
    let mid = ClientHandshake::start(Pipe::default(), req, None).unwrap();
    let mut mid = match mid.handshake() {
        Err(HandshakeError::Interrupted(m)) => m,
        _ => unreachable!(),
    };
    let out = std::mem::take(&mut mid.get_mut().get_mut().tx);
    let e = c.on_wire(&out, now);
    assert!(matches!(e, Err(StreamClose::WsHandshake(_))), "{e:?}");
    let answer = String::from_utf8_lossy(&c.take_wire()).to_string();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // Garbage instead of HTTP.
    let mut c = StreamCodec::new(StreamKind::Ws, None, limits(), now);
    let e = c.on_wire(b"\x16\x03\x01\x02\x00garbage\r\n\r\n", now);
    assert!(matches!(e, Err(StreamClose::WsHandshake(_))), "{e:?}");
    // An opening request that never ends.
    let mut c = StreamCodec::new(StreamKind::Ws, None, limits(), now);
    let mut r = Ok(());
    for _ in 0..100 {
        r = c.on_wire(b"GET / HTTP/1.1\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", now);
        if r.is_err() {
            break;
        }
    }
    assert!(matches!(r, Err(StreamClose::WsHandshake(_))), "{r:?}");
}

#[test]
fn websocket_bounds_size_rate_handshake_time_and_pongs() {
    let now = Instant::now();
    let mut c = StreamCodec::new(StreamKind::Ws, None, limits(), now);
    let mut ws = ws_client(&mut c, now, Some("sip, chat")).unwrap();
    let big = "x".repeat(5000);
    let e = to_codec(&mut ws, &mut c, Message::Text(big), now);
    assert_eq!(e, Err(StreamClose::Oversize { limit: 4096 }));

    let mut c = StreamCodec::new(StreamKind::Ws, None, limits(), now);
    let mut ws = ws_client(&mut c, now, Some("sip")).unwrap();
    let mut r = Ok(());
    for _ in 0..=limits().max_ws_frames_per_sec {
        r = to_codec(&mut ws, &mut c, Message::Ping(Vec::new()), now);
        if r.is_err() {
            break;
        }
    }
    assert_eq!(r, Err(StreamClose::Flood));

    // Handshake time: nothing arrives.
    let mut c = StreamCodec::new(StreamKind::Ws, None, limits(), now);
    assert_eq!(c.on_tick(now + Duration::from_secs(1)), Ok(()));
    assert_eq!(
        c.on_tick(now + Duration::from_secs(10)),
        Err(StreamClose::HandshakeTimeout)
    );

    // Keep-alive: a quiet peer gets a ping; no pong closes.
    let mut c = StreamCodec::new(StreamKind::Ws, None, limits(), now);
    let mut ws = ws_client(&mut c, now, Some("sip")).unwrap();
    let t1 = now + Duration::from_secs(30);
    assert_eq!(c.on_tick(t1), Ok(()));
    let got = from_codec(&mut ws, &mut c);
    assert!(matches!(got.as_slice(), [Message::Ping(_)]), "{got:?}");
    // The client's pong (tungstenite queued it when it read the ping).
    ws.flush().unwrap();
    let out = std::mem::take(&mut ws.get_mut().tx);
    c.on_wire(&out, t1).unwrap();
    assert_eq!(
        c.on_tick(t1 + Duration::from_secs(31)),
        Ok(()),
        "pong answered the ping"
    );
    let _ = from_codec(&mut ws, &mut c);
    assert_eq!(
        c.on_tick(t1 + Duration::from_secs(62)),
        Err(StreamClose::PongTimeout)
    );
}

fn tls_pair(now: Instant, kind: StreamKind) -> (StreamCodec, rustls::ClientConnection) {
    let id = crate::tls::TlsIdentity::self_signed(&["localhost".into()]).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(id.cert_der.clone()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client =
        rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
    (
        StreamCodec::new(kind, Some(id.config), limits(), now),
        client,
    )
}

/// Moves bytes both ways until neither side has anything to say.
fn shuttle(
    c: &mut StreamCodec,
    cl: &mut rustls::ClientConnection,
    now: Instant,
) -> Result<Vec<u8>, StreamClose> {
    let mut plain = Vec::new();
    for _ in 0..20 {
        let mut out = Vec::new();
        while cl.wants_write() {
            cl.write_tls(&mut out).unwrap();
        }
        if !out.is_empty() {
            c.on_wire(&out, now)?;
        }
        let back = c.take_wire();
        if out.is_empty() && back.is_empty() {
            break;
        }
        let mut rd = &back[..];
        while !rd.is_empty() {
            cl.read_tls(&mut rd).unwrap();
            cl.process_new_packets().unwrap();
        }
        let mut buf = [0u8; 8192];
        while let Ok(n) = cl.reader().read(&mut buf) {
            if n == 0 {
                break;
            }
            plain.extend_from_slice(&buf[..n]);
        }
    }
    Ok(plain)
}

#[test]
fn tls_carries_framed_sip_both_ways() {
    let now = Instant::now();
    let (mut c, mut cl) = tls_pair(now, StreamKind::Tls);
    shuttle(&mut c, &mut cl, now).unwrap();
    assert!(c.established());
    cl.writer().write_all(REGISTER.as_bytes()).unwrap();
    shuttle(&mut c, &mut cl, now).unwrap();
    assert_eq!(
        c.poll_event(),
        Some(StreamEvent::Message(REGISTER.as_bytes().to_vec()))
    );
    assert!(c.send(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
    let got = shuttle(&mut c, &mut cl, now).unwrap();
    assert_eq!(got, b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
}

#[test]
fn garbage_tls_is_refused_and_a_plain_request_on_the_tls_port_too() {
    let now = Instant::now();
    let (mut c, _) = tls_pair(now, StreamKind::Tls);
    let e = c.on_wire(b"\x16\x03\x01\x00\x05hello-garbage-garbage", now);
    assert!(matches!(e, Err(StreamClose::Tls(_))), "{e:?}");
    let (mut c, _) = tls_pair(now, StreamKind::Tls);
    let e = c.on_wire(REGISTER.as_bytes(), now);
    assert!(matches!(e, Err(StreamClose::Tls(_))), "{e:?}");
    let mut c = StreamCodec::new(StreamKind::Tls, None, limits(), now);
    assert!(matches!(c.on_wire(b"x", now), Err(StreamClose::Tls(_))));
}

#[test]
fn secure_websocket_is_websocket_inside_tls() {
    let now = Instant::now();
    let (mut c, mut cl) = tls_pair(now, StreamKind::Wss);
    shuttle(&mut c, &mut cl, now).unwrap();
    assert!(!c.established(), "TLS is up, the WebSocket is not yet");
    let mut req = "wss://localhost/".into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
    let mut mid = match ClientHandshake::start(Pipe::default(), req, None)
        .unwrap()
        .handshake()
    {
        Err(HandshakeError::Interrupted(m)) => m,
        _ => unreachable!(),
    };
    let out = std::mem::take(&mut mid.get_mut().get_mut().tx);
    cl.writer().write_all(&out).unwrap();
    let answer = shuttle(&mut c, &mut cl, now).unwrap();
    mid.get_mut().get_mut().rx.extend_from_slice(&answer);
    let (mut ws, _) = mid.handshake().map_err(|e| e.to_string()).unwrap();
    assert!(c.established());
    ws.send(Message::Text(REGISTER.into())).unwrap();
    let out = std::mem::take(&mut ws.get_mut().tx);
    cl.writer().write_all(&out).unwrap();
    shuttle(&mut c, &mut cl, now).unwrap();
    assert_eq!(
        c.poll_event(),
        Some(StreamEvent::Message(REGISTER.as_bytes().to_vec()))
    );
    let _ = Role::Client;
}
