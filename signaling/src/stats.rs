//! [`CoreStats`]: the signaling core's counters, shared by the core and
//! the B2BUA it drives (through `crate::tu::Tu`).

/// Counters of the core (monotonic, since creation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Datagrams handed in.
    pub datagrams: u64,
    /// Malformed requests (answered 400/501/505 when a Via was salvaged),
    /// and requests whose digest `uri` is not their Request-URI (400).
    pub malformed_requests: u64,
    /// Malformed requests that could not be answered (no Via): dropped.
    pub dropped_requests: u64,
    /// Malformed responses and unparsable datagrams: dropped.
    pub malformed_responses: u64,
    /// Responses that matched no call or transaction: dropped.
    pub stray_responses: u64,
    /// Successful REGISTER requests.
    pub registrations: u64,
    /// Authentication challenges sent (401/407).
    pub challenges: u64,
    /// Authentication failures answered 403.
    pub auth_failures: u64,
    /// Calls accepted (slot reserved, INVITE sent to the callee).
    pub calls: u64,
    /// Calls answered (200 relayed to the caller).
    pub calls_answered: u64,
    /// INVITEs refused for want of a relay slot (503).
    pub no_slot: u64,
    /// New INVITEs refused with 503 while draining for shutdown.
    pub drain_refused: u64,
    /// Messages that could not be framed on a stream (400, connection closed).
    pub unframed: u64,
    /// INVITEs for a user registered over TLS/WS/WSS whose connection is
    /// gone (480).
    pub flow_down: u64,
    /// Calls ended by the B2BUA because their session interval (RFC 4028)
    /// passed without a refresh: BYE to both legs.
    pub session_timer_expired: u64,
    /// Requests answered 422 (Session-Expires below our Min-SE).
    pub session_interval_too_small: u64,
    /// INFO requests relayed into the other dialog of a call (RFC 6086).
    pub info_relayed: u64,
    /// PRACKs sent to callees for their reliable provisionals (RFC 3262 §4).
    pub prack_sent: u64,
    /// Provisionals sent reliably to callers (RFC 3262 §3: RSeq, retransmitted
    /// until PRACK).
    pub reliable_provisionals: u64,
    /// Reliable provisionals to callers never PRACKed within 64·T1: the
    /// call was refused with 504 and the callee CANCELled (RFC 3262 §3).
    pub reliable_abandoned: u64,
    /// Transfers started: REFERs answered 202 (RFC 3515) and INVITEs
    /// with Replaces that took a dialog's place (RFC 3891).
    pub transfers: u64,
    /// Transfers whose target refused or did not answer (the failure
    /// NOTIFYed, the call left as it was).
    pub transfers_failed: u64,
}
