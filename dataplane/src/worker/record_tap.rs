//! Stage 4's recording tap on the worker: what a recorded leg's peer sent,
//! as the relay accepted it (after SRTP unprotect), copied into the
//! worker's recording ring ([`crate::record`]). A full ring drops the
//! frame (counted), never the packet; nothing here allocates or blocks.

use std::net::{IpAddr, SocketAddr};

use tern_shared::table::{LegConfig, SlotTable};

use crate::record::RecordTap;

use super::Worker;

/// Taps `pkt`, received on socket `sock` of slot `id` from `src` at
/// `at_ms` (Unix ms), into `tap` when leg `leg`'s configuration `lc`
/// records and is not paused. The relay address is the socket's: its
/// interface among `ifaces` and its port in `table`.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn tap_leg(
    tap: &mut RecordTap,
    id: u32,
    sock: usize,
    leg: usize,
    lc: &LegConfig,
    rtcp: bool,
    src: SocketAddr,
    at_ms: u64,
    pkt: &[u8],
    table: &SlotTable,
    ifaces: &[IpAddr],
) {
    let m = &lc.media;
    if !m.record || m.record_paused {
        return;
    }
    let ports = table.ports(id, leg);
    let port = if sock & 1 == 1 { ports.rtcp } else { ports.rtp };
    let Some(ip) = ifaces.get(sock >> 2).or(ifaces.first()).copied() else {
        return;
    };
    tap.tap(
        id,
        leg,
        rtcp,
        m.record_id,
        at_ms.saturating_mul(1000),
        src,
        SocketAddr::new(ip, port),
        pkt,
    );
}

impl Worker {
    /// Publishes the recording drops (each tick).
    pub(super) fn publish_record(&self) {
        if let Some(t) = self.rec.as_ref() {
            self.table.set_worker_record_dropped(self.index, t.dropped);
        }
    }
}
