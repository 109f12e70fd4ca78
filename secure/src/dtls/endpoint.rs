//! One leg's DTLS-SRTP endpoint: OpenSSL's DTLS 1.2 state machine over an
//! in-memory datagram pipe.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use foreign_types::ForeignTypeRef;
use openssl::error::ErrorStack;
use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslMethod, SslOptions, SslStream, SslVerifyMode, SslVersion,
};

use super::{profile, Certificate, DtlsError, Fingerprint, Role, SrtpKeying, State};

/// Path MTU the handshake flights are cut to, in bytes of DTLS record
/// (what goes into one UDP payload).
const MTU: u32 = 1200;

/// `use_srtp` profiles offered (client) and accepted (server), most
/// preferred first (RFC 5764 §4.1.1, RFC 7714 §14.2).
const SRTP_PROFILES: &str =
    "SRTP_AEAD_AES_256_GCM:SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80:SRTP_AES128_CM_SHA1_32";

/// Cipher suites: ECDHE with AES-GCM only (RFC 5289), for ECDSA (ours)
/// and RSA (some peers') certificates. Every protected record then
/// carries an 8-byte explicit nonce and a 16-byte tag.
const CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:\
                       ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384";

/// DTLS record header: type, version (2), epoch (2), sequence (6),
/// length (2) — RFC 6347 §4.1.
const RECORD_HEADER: usize = 13;

/// Shortest protected (epoch ≠ 0) record body with [`CIPHERS`]: explicit
/// nonce 8 + tag 16. OpenSSL 3.0 does not discard shorter ones cleanly: it
/// reports a bare SYSCALL error and the connection reads nothing after,
/// so such records are dropped before OpenSSL sees them.
const MIN_PROTECTED_BODY: usize = 24;

/// RFC 5764 §4.2 exporter label.
const EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// `SSL_ctrl` commands behind OpenSSL's `DTLSv1_get_timeout` and
/// `DTLSv1_handle_timeout` macros (`ssl.h`), which `openssl-sys` lacks.
const DTLS_CTRL_GET_TIMEOUT: libc::c_int = 73;
const DTLS_CTRL_HANDLE_TIMEOUT: libc::c_int = 74;

/// Application-data reads drained per datagram once connected; each read
/// consumes at least one record, so this only bounds a pathological case.
const MAX_READS_PER_DATAGRAM: usize = 64;

/// The datagram pipe OpenSSL reads from and writes to. A read takes one
/// whole datagram (or `WouldBlock` when none is queued, which OpenSSL
/// sees as "want read"); each write is one outbound datagram, as on a UDP
/// socket.
#[derive(Default)]
struct Pipe {
    inbound: VecDeque<Vec<u8>>,
    outbound: VecDeque<Vec<u8>>,
    /// Datagrams ever written (outbound ones since taken included).
    written: u64,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(dgram) = self.inbound.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        // Like recv(2) on a datagram socket: what does not fit is lost.
        let n = dgram.len().min(buf.len());
        buf[..n].copy_from_slice(&dgram[..n]);
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbound.push_back(buf.to_vec());
        self.written += 1;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One leg's DTLS-SRTP endpoint (RFC 5763, RFC 5764), DTLS 1.2 only.
///
/// Sans-IO: it owns no socket and no clock. Feed it each received DTLS
/// datagram with [`Self::handle_datagram`], send every datagram
/// [`Self::poll_transmit`] yields (after each call into the endpoint,
/// until it yields `None`), and call [`Self::handle_timeout`] once
/// [`Self::timeout`] has elapsed. When [`Self::state`] is
/// [`State::Connected`], [`Self::take_keying`] gives the SRTP keys.
///
/// The peer must present a certificate (both roles ask for one: RFC 5763
/// §5); any certificate is accepted as long as the SHA-x digest of its DER
/// equals the fingerprint from the peer's SDP, else [`State::Failed`] with
/// [`DtlsError::FingerprintMismatch`] (and a `bad_certificate` alert to
/// the peer).
///
/// Noise before the handshake: a [`Role::Passive`] endpoint that has not
/// yet sent anything treats a datagram that breaks the handshake as noise
/// — it starts over with a fresh server state and stays
/// [`State::Handshaking`] — so garbage sprayed at a leg before the real
/// ClientHello cannot kill it. The cost: a real client whose ClientHello
/// we cannot accept (no common cipher or SRTP profile) gets no alert, and
/// the caller's own handshake deadline ends the leg. Once the endpoint has
/// sent a flight, records OpenSSL rejects are dropped where DTLS says so
/// (RFC 6347 §4.1.2.7: bad length, version, epoch, MAC) and anything that
/// breaks the handshake fails it.
pub struct Endpoint {
    ctx: SslContext,
    role: Role,
    remote_fingerprint: Fingerprint,
    /// Set by the verify callback when the peer's leaf certificate did not
    /// match `remote_fingerprint` (for the error's name).
    mismatch: Arc<AtomicBool>,
    stream: SslStream<Pipe>,
    state: State,
    keying: Option<SrtpKeying>,
    failure: Option<DtlsError>,
    /// Application-data bytes read and dropped once connected.
    app_data_dropped: u64,
}

impl Endpoint {
    /// A fresh endpoint presenting `cert`, in `role`, that will accept only
    /// a peer whose certificate matches `remote_fingerprint` (from the
    /// peer's `a=fingerprint`, RFC 8122 §5). Offers/accepts the SRTP
    /// profiles AEAD_AES_256_GCM, AEAD_AES_128_GCM, AES128_CM_SHA1_80 and
    /// AES128_CM_SHA1_32, in that order of preference; flights are cut to
    /// 1200-byte datagrams.
    ///
    /// An [`Role::Active`] endpoint starts at once: its ClientHello is
    /// ready in [`Self::poll_transmit`] and its retransmission timer runs.
    ///
    /// # Errors
    /// [`DtlsError::Setup`] when OpenSSL refuses the context (e.g. no SRTP
    /// support); [`DtlsError::Handshake`] when an Active endpoint cannot
    /// write its ClientHello.
    pub fn new(
        cert: &Certificate,
        role: Role,
        remote_fingerprint: Fingerprint,
    ) -> Result<Endpoint, DtlsError> {
        let ctx = context(cert).map_err(setup_err)?;
        let mismatch = Arc::new(AtomicBool::new(false));
        let stream = stream(&ctx, role, &remote_fingerprint, &mismatch).map_err(setup_err)?;
        let mut ep = Endpoint {
            ctx,
            role,
            remote_fingerprint,
            mismatch,
            stream,
            state: State::Handshaking,
            keying: None,
            failure: None,
            app_data_dropped: 0,
        };
        if role == Role::Active {
            ep.drive()?;
        }
        Ok(ep)
    }

    /// Takes one received DTLS datagram (a UDP payload, first byte 20–63
    /// per RFC 7983 §7; it may hold several records) and advances the
    /// handshake; what the endpoint wants to send in reply is then in
    /// [`Self::poll_transmit`]. Once connected, application data is read
    /// and dropped (DTLS-SRTP carries none), retransmitted final flights
    /// are answered, and a close_notify moves to [`State::Closed`]. After
    /// [`State::Failed`] or [`State::Closed`] datagrams are ignored.
    ///
    /// Never panics on any input.
    ///
    /// # Errors
    /// The reason, when this datagram moved the endpoint to
    /// [`State::Failed`]: [`DtlsError::FingerprintMismatch`],
    /// [`DtlsError::NoSrtpProfile`], [`DtlsError::Export`] or
    /// [`DtlsError::Handshake`] (a protocol error, or a fatal alert sent or
    /// received). Records that are merely invalid are dropped with `Ok`.
    pub fn handle_datagram(&mut self, pkt: &[u8]) -> Result<(), DtlsError> {
        if pkt.is_empty() || matches!(self.state, State::Failed | State::Closed) {
            return Ok(());
        }
        // Nothing sent yet by a server: nobody is handshaking with us.
        let pristine = self.role == Role::Passive
            && self.state == State::Handshaking
            && self.stream.get_ref().written == 0;
        let Some(pkt) = sanitize(pkt) else {
            return Ok(());
        };
        self.stream.get_mut().inbound.push_back(pkt.clone());
        let result = self.drive();
        if result.is_ok() || !pristine {
            return result;
        }
        // This datagram broke a server that had sent nothing: it is noise,
        // or a real ClientHello that broke on noise buffered before it.
        // Start over and give it this datagram alone; if that breaks too,
        // drop it and start over again.
        self.reset()?;
        self.stream.get_mut().inbound.push_back(pkt);
        if self.drive().is_err() {
            self.reset()?;
        }
        Ok(())
    }

    /// The next datagram to send to the peer (a whole UDP payload of at
    /// most 1200 bytes), oldest first; `None` when nothing is queued.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.stream.get_mut().outbound.pop_front()
    }

    /// How long from now until [`Self::handle_timeout`] is due: the
    /// handshake retransmission timer (RFC 6347 §4.2.4; OpenSSL starts at
    /// 1 s and doubles up to 60 s). `None` when no timer runs (a passive
    /// endpoint before the ClientHello, after the handshake, after failure
    /// or close). `Some(Duration::ZERO)` means now.
    pub fn timeout(&self) -> Option<Duration> {
        if matches!(self.state, State::Failed | State::Closed) {
            return None;
        }
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        // SAFETY: DTLSv1_get_timeout(ssl, &tv): `ssl` is live for the call
        // (owned by `self.stream`), `tv` is a valid, writable timeval.
        let running = unsafe {
            openssl_sys::SSL_ctrl(
                self.stream.ssl().as_ptr(),
                DTLS_CTRL_GET_TIMEOUT,
                0,
                (&mut tv as *mut libc::timeval).cast(),
            )
        };
        if running <= 0 {
            return None;
        }
        let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
        let micros = u32::try_from(tv.tv_usec).unwrap_or(0).min(999_999);
        Some(Duration::new(secs, micros * 1000))
    }

    /// Fires the retransmission timer if it is due: the last flight is
    /// queued again in [`Self::poll_transmit`] and the timer doubled. Does
    /// nothing when no timer runs or it is not yet due, so calling early is
    /// harmless.
    ///
    /// # Errors
    /// [`DtlsError::Handshake`] (and [`State::Failed`]) when OpenSSL gives
    /// up after too many retransmissions (12 in OpenSSL 3.0).
    pub fn handle_timeout(&mut self) -> Result<(), DtlsError> {
        if matches!(self.state, State::Failed | State::Closed) {
            return Ok(());
        }
        // SAFETY: DTLSv1_handle_timeout(ssl): `ssl` is live and exclusively
        // borrowed (`&mut self`); the command takes no argument pointer.
        let r = unsafe {
            openssl_sys::SSL_ctrl(
                self.stream.ssl().as_ptr(),
                DTLS_CTRL_HANDLE_TIMEOUT,
                0,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let why = ErrorStack::get().to_string();
            let why = if why.is_empty() {
                "retransmission limit reached".to_owned()
            } else {
                why
            };
            return Err(self.fail(DtlsError::Handshake(why)));
        }
        Ok(())
    }

    /// Where the endpoint stands.
    pub fn state(&self) -> State {
        self.state
    }

    /// The SRTP keying, once [`State::Connected`]; `Some` exactly once.
    pub fn take_keying(&mut self) -> Option<SrtpKeying> {
        self.keying.take()
    }

    /// The role given at [`Self::new`].
    pub fn role(&self) -> Role {
        self.role
    }

    /// Why the endpoint is [`State::Failed`]; `None` otherwise.
    pub fn failure(&self) -> Option<&DtlsError> {
        self.failure.as_ref()
    }

    /// Ends the connection: queues a close_notify alert (RFC 5246 §7.2.1)
    /// in [`Self::poll_transmit`] if the handshake had completed, and moves
    /// to [`State::Closed`] (any keying not yet taken is dropped). Does
    /// nothing once [`State::Failed`] or [`State::Closed`].
    pub fn close(&mut self) {
        if matches!(self.state, State::Failed | State::Closed) {
            return;
        }
        if self.state == State::Connected {
            let _ = self.stream.shutdown();
        }
        self.state = State::Closed;
        self.keying = None;
        self.stream.get_mut().inbound.clear();
    }

    /// Bytes of application data the peer sent after the handshake, which
    /// DTLS-SRTP does not use: read and dropped.
    pub fn app_data_dropped(&self) -> u64 {
        self.app_data_dropped
    }

    /// Test hook: sends application data (DTLS-SRTP never does).
    #[cfg(test)]
    pub(super) fn send_app_data(&mut self, data: &[u8]) {
        let _ = self.stream.ssl_write(data);
    }

    /// Runs OpenSSL on what is queued inbound.
    fn drive(&mut self) -> Result<(), DtlsError> {
        match self.state {
            State::Handshaking => self.drive_handshake(),
            State::Connected => self.drain_reads(),
            State::Failed | State::Closed => {
                self.stream.get_mut().inbound.clear();
                Ok(())
            }
        }
    }

    fn drive_handshake(&mut self) -> Result<(), DtlsError> {
        match self.stream.do_handshake() {
            Ok(()) => {
                self.connected()?;
                // Records after the last handshake message in the same
                // datagram, if any.
                self.drain_reads()
            }
            Err(e) => match e.code() {
                ErrorCode::WANT_READ | ErrorCode::WANT_WRITE => Ok(()),
                ErrorCode::ZERO_RETURN => {
                    self.state = State::Closed;
                    Ok(())
                }
                _ => {
                    let err = if self.mismatch.load(Ordering::Relaxed) {
                        DtlsError::FingerprintMismatch
                    } else {
                        DtlsError::Handshake(e.to_string())
                    };
                    Err(self.fail(err))
                }
            },
        }
    }

    /// The handshake just completed: pin the certificate, check the
    /// profile, export the keys.
    fn connected(&mut self) -> Result<(), DtlsError> {
        let (id, key_len, salt_len, mut material) = match self.check_and_export() {
            Ok(v) => v,
            Err(e) => return Err(self.fail_closing(e)),
        };
        // client key | server key | client salt | server salt (RFC 5764 §4.2)
        let (keys, salts) = material.split_at(2 * key_len);
        let (client_key, server_key) = keys.split_at(key_len);
        let (client_salt, server_salt) = salts.split_at(salt_len);
        let (local_key, local_salt, remote_key, remote_salt) = match self.role {
            Role::Active => (client_key, client_salt, server_key, server_salt),
            Role::Passive => (server_key, server_salt, client_key, client_salt),
        };
        self.keying = Some(SrtpKeying {
            profile: id,
            local_key: local_key.to_vec(),
            local_salt: local_salt.to_vec(),
            remote_key: remote_key.to_vec(),
            remote_salt: remote_salt.to_vec(),
        });
        material.fill(0);
        self.state = State::Connected;
        Ok(())
    }

    /// The peer certificate pinned, the profile known, the exporter's
    /// output: `(profile, key_len, salt_len, material)`.
    fn check_and_export(&self) -> Result<(u16, usize, usize, Vec<u8>), DtlsError> {
        let ssl = self.stream.ssl();
        let pinned = ssl
            .peer_certificate()
            .and_then(|c| c.to_der().ok())
            .is_some_and(|der| {
                Fingerprint::of_der(self.remote_fingerprint.algorithm, &der)
                    == self.remote_fingerprint
            });
        if !pinned {
            return Err(DtlsError::FingerprintMismatch);
        }
        let (id, (key_len, salt_len)) = ssl
            .selected_srtp_profile()
            .and_then(|p| u16::try_from(p.id().as_raw()).ok())
            .and_then(|id| profile::key_salt_len(id).map(|l| (id, l)))
            .ok_or(DtlsError::NoSrtpProfile)?;
        let mut material = vec![0u8; 2 * (key_len + salt_len)];
        ssl.export_keying_material(&mut material, EXPORTER_LABEL, None)
            .map_err(|e| DtlsError::Export(e.to_string()))?;
        Ok((id, key_len, salt_len, material))
    }

    /// Connected: read (and drop) application data, which also lets
    /// OpenSSL answer a retransmitted final flight and see alerts.
    fn drain_reads(&mut self) -> Result<(), DtlsError> {
        let mut buf = [0u8; 2048];
        for _ in 0..MAX_READS_PER_DATAGRAM {
            match self.stream.ssl_read(&mut buf) {
                Ok(n) => self.app_data_dropped += n as u64,
                Err(e) => match e.code() {
                    ErrorCode::WANT_READ | ErrorCode::WANT_WRITE => return Ok(()),
                    ErrorCode::ZERO_RETURN => {
                        // Answer the close_notify with ours.
                        let _ = self.stream.shutdown();
                        self.state = State::Closed;
                        return Ok(());
                    }
                    _ => return Err(self.fail(DtlsError::Handshake(e.to_string()))),
                },
            }
        }
        self.stream.get_mut().inbound.clear();
        Ok(())
    }

    fn fail(&mut self, err: DtlsError) -> DtlsError {
        self.state = State::Failed;
        self.keying = None;
        self.stream.get_mut().inbound.clear();
        self.failure = Some(err.clone());
        err
    }

    /// Fails a handshake OpenSSL completed but we refuse: tell the peer
    /// with a close_notify so it does not keep a dead leg.
    fn fail_closing(&mut self, err: DtlsError) -> DtlsError {
        let _ = self.stream.shutdown();
        self.fail(err)
    }

    /// A fresh OpenSSL state in the same role (what was queued is lost).
    fn reset(&mut self) -> Result<(), DtlsError> {
        self.mismatch = Arc::new(AtomicBool::new(false));
        self.stream = stream(
            &self.ctx,
            self.role,
            &self.remote_fingerprint,
            &self.mismatch,
        )
        .map_err(|e| self.fail(setup_err(e)))?;
        self.state = State::Handshaking;
        self.failure = None;
        self.keying = None;
        Ok(())
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("role", &self.role)
            .field("state", &self.state)
            .field(
                "remote_fingerprint",
                &format_args!("{}", self.remote_fingerprint),
            )
            .finish_non_exhaustive()
    }
}

/// The datagram's well-formed records (RFC 6347 §4.1) with protected
/// records too short to be real left out (see [`MIN_PROTECTED_BODY`]);
/// trailing bytes that are no whole record are dropped. `None` when
/// nothing is left.
fn sanitize(pkt: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(pkt.len());
    let mut rest = pkt;
    while rest.len() >= RECORD_HEADER {
        let epoch = u16::from_be_bytes([rest[3], rest[4]]);
        let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        let Some(record) = rest.get(..RECORD_HEADER + len) else {
            break;
        };
        if epoch == 0 || len >= MIN_PROTECTED_BODY {
            out.extend_from_slice(record);
        }
        rest = &rest[record.len()..];
    }
    (!out.is_empty()).then_some(out)
}

fn setup_err(e: ErrorStack) -> DtlsError {
    DtlsError::Setup(e.to_string())
}

/// DTLS 1.2 only, our certificate, `use_srtp`, and an MTU we set
/// ourselves (the memory pipe has no path MTU to query).
fn context(cert: &Certificate) -> Result<SslContext, ErrorStack> {
    let mut b = SslContext::builder(SslMethod::dtls())?;
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_max_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_options(SslOptions::NO_QUERY_MTU);
    b.set_certificate(&cert.x509)?;
    b.set_private_key(&cert.key)?;
    b.check_private_key()?;
    b.set_cipher_list(CIPHERS)?;
    b.set_tlsext_use_srtp(SRTP_PROFILES)?;
    Ok(b.build())
}

/// One OpenSSL connection over a fresh pipe. The verify callback accepts
/// any chain (self-signed is the norm) but pins the leaf (depth 0) to
/// `remote`, setting `mismatch` when it differs.
fn stream(
    ctx: &SslContext,
    role: Role,
    remote: &Fingerprint,
    mismatch: &Arc<AtomicBool>,
) -> Result<SslStream<Pipe>, ErrorStack> {
    let mut ssl = Ssl::new(ctx)?;
    match role {
        Role::Active => ssl.set_connect_state(),
        Role::Passive => ssl.set_accept_state(),
    }
    ssl.set_mtu(MTU)?;
    let want = remote.clone();
    let flag = Arc::clone(mismatch);
    ssl.set_verify_callback(
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        move |_preverify_ok, store| {
            if store.error_depth() != 0 {
                return true;
            }
            let ok = store
                .current_cert()
                .and_then(|c| c.to_der().ok())
                .is_some_and(|der| Fingerprint::of_der(want.algorithm, &der) == want);
            if !ok {
                flag.store(true, Ordering::Relaxed);
            }
            ok
        },
    );
    SslStream::new(ssl, Pipe::default())
}
