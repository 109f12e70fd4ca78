//! What an SQE's user_data carries, so that its completion finds its way
//! back without a lookup table.
//!
//! ```text
//!  63 62 61      54 53        38 37    34 33 32 31          0
//! +-----+----------+------------+-------+--+--+-------------+
//! |kind |    0     |    gen     | iface |rc|lg| slot index  |  receive
//! +-----+----------+------------+-------+--+--+-------------+
//! |kind |                 0                      | buffer id |  send (bits 0..16)
//! +-----+----------------------------------------+-----------+
//! |kind |              0              | store id | entry     |  jitter send
//! +-----+-----------------------------+----------+-----------+
//! ```
//!
//! - bits 62..64, the kind ([`Kind`]);
//! - a receive: the slot's index within the worker (bits 0..32), the
//!   socket (bits 32..38: leg bit 32, RTCP bit 33, interface bits 34..38)
//!   and the slot's bind generation (bits 38..54), so a completion of a
//!   socket that has since been closed is recognised and ignored;
//! - a send: the provided buffer's id, which also indexes the send slab
//!   (one send per buffer);
//! - a send from a jitter store: the store id (bits 16..32) and the entry
//!   (bits 0..16);
//! - a cancel request: the kind alone (its targets report themselves);
//!   the same kind with bit 0 set: the futex wait on the doorbell.

const KIND_SHIFT: u32 = 62;
const K_RECV: u64 = 0;
const K_SEND: u64 = 1;
const K_CANCEL: u64 = 2;
const K_JSEND: u64 = 3;

/// What a completion is the end of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A multishot receive ([`recv_parts`]).
    Recv,
    /// A send from a provided buffer ([`send_bid`]).
    Send,
    /// A cancel request.
    Cancel,
    /// A send from a jitter store ([`jsend_parts`]).
    JSend,
    /// The futex wait on the worker's doorbell ([`DOORBELL_UD`]).
    Doorbell,
}

/// The kind of `ud`.
#[inline]
pub(super) fn kind(ud: u64) -> Kind {
    match ud >> KIND_SHIFT {
        K_RECV => Kind::Recv,
        K_SEND => Kind::Send,
        K_CANCEL if ud == DOORBELL_UD => Kind::Doorbell,
        K_CANCEL => Kind::Cancel,
        _ => Kind::JSend,
    }
}

/// Bits of a receive's socket index: four sockets on each of up to 16
/// interfaces ([`tern_shared::table::MAX_INTERFACES`]).
const SOCK_MASK: u64 = 0x3f;

/// A receive on socket `sock` (`iface * 4 + leg * 2 + rtcp`, 0..64) of
/// the worker's slot `idx`, bound in generation `gen`.
#[inline]
pub(super) fn recv_ud(idx: u32, sock: usize, gen: u16) -> u64 {
    K_RECV << KIND_SHIFT | u64::from(idx) | (sock as u64 & SOCK_MASK) << 32 | u64::from(gen) << 38
}

/// `(slot index, socket index, generation)` of a receive's `ud`.
#[inline]
pub(super) fn recv_parts(ud: u64) -> (u32, usize, u16) {
    (
        ud as u32,
        (ud >> 32 & SOCK_MASK) as usize,
        (ud >> 38) as u16,
    )
}

/// A send from provided buffer `bid`.
#[inline]
pub(super) fn send_ud(bid: u16) -> u64 {
    K_SEND << KIND_SHIFT | u64::from(bid)
}

/// The buffer id of a send's `ud`.
#[inline]
pub(super) fn send_bid(ud: u64) -> u16 {
    ud as u16
}

/// A send of entry `entry` of jitter store `store`.
#[inline]
pub(super) fn jsend_ud(store: u16, entry: u16) -> u64 {
    K_JSEND << KIND_SHIFT | u64::from(store) << 16 | u64::from(entry)
}

/// `(store id, entry)` of a jitter send's `ud`.
#[inline]
pub(super) fn jsend_parts(ud: u64) -> (u16, u16) {
    ((ud >> 16) as u16, ud as u16)
}

/// A cancel request.
pub(super) const CANCEL_UD: u64 = K_CANCEL << KIND_SHIFT;

/// The futex wait on the doorbell: the cancel kind with bit 0 set.
pub(super) const DOORBELL_UD: u64 = K_CANCEL << KIND_SHIFT | 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        let ud = recv_ud(123_456, 3, 0xbeef);
        assert_eq!(ud >> KIND_SHIFT, K_RECV);
        assert_eq!(ud as u32, 123_456);
        assert_eq!(ud >> 32 & 3, 3);
        assert_eq!((ud >> 38) as u16, 0xbeef);
        assert_eq!(kind(ud), Kind::Recv);
        assert_eq!(recv_parts(ud), (123_456, 3, 0xbeef));
        assert_eq!(recv_parts(recv_ud(7, 63, 1)), (7, 63, 1));
        let s = send_ud(4095);
        assert_eq!(s >> KIND_SHIFT, K_SEND);
        assert_eq!(s as u16, 4095);
        assert_eq!((kind(s), send_bid(s)), (Kind::Send, 4095));
        let j = jsend_ud(0xfffe, 0x1234);
        assert_eq!((kind(j), jsend_parts(j)), (Kind::JSend, (0xfffe, 0x1234)));
        assert_eq!(kind(CANCEL_UD), Kind::Cancel);
    }

    #[test]
    fn fields_do_not_overlap() {
        // Every field at its maximum still decodes, and leaves the kind.
        let ud = recv_ud(u32::MAX, 63, u16::MAX);
        assert_eq!(
            (kind(ud), recv_parts(ud)),
            (Kind::Recv, (u32::MAX, 63, u16::MAX))
        );
        assert_eq!(recv_parts(recv_ud(0, 64, 0)).1, 0, "socket index is 6 bits");
        assert!(
            tern_shared::table::MAX_INTERFACES * 4 <= SOCK_MASK as usize + 1,
            "every interface's sockets fit"
        );
        let j = jsend_ud(u16::MAX, u16::MAX);
        assert_eq!(
            (kind(j), jsend_parts(j)),
            (Kind::JSend, (u16::MAX, u16::MAX))
        );
        assert_eq!(kind(send_ud(u16::MAX)), Kind::Send);
    }
}
