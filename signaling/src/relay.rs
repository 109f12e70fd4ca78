//! Relay backends: where the B2BUA anchors a call's media.
//!
//! [`MediaRelay`] is the one trait; [`ShmRelay`] programs a
//! [`SlotTable`] directly (no syscall, no round trip): the same-process
//! table of `tern up`, or the table of a `tern relay` process on the same
//! host mapped with [`SlotTable::open`] (`tern sip --relay shm:NAME`).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tern_shared::table::{LegPorts, SlotConfig, SlotTable, TableError};

/// Errors from a relay backend.
#[derive(Debug)]
pub enum RelayError {
    /// No free slot: the B2BUA answers 503 Service Unavailable.
    Full,
    /// Anything else (bad slot id, wrong state, backend unreachable): the
    /// B2BUA answers 500 and releases what it holds.
    Failed(String),
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::Full => write!(f, "no free relay slot"),
            RelayError::Failed(s) => write!(f, "relay: {s}"),
        }
    }
}

impl std::error::Error for RelayError {}

impl From<TableError> for RelayError {
    fn from(e: TableError) -> Self {
        match e {
            TableError::Full => RelayError::Full,
            e => RelayError::Failed(e.to_string()),
        }
    }
}

/// A media relay the signaling plane programs. One slot is one call with
/// two legs: leg 0 faces the caller (offerer), leg 1 the callee.
///
/// Life cycle: [`allocate`](MediaRelay::allocate), then
/// [`program`](MediaRelay::program) any number of times (the first one
/// activates the slot), then [`release`](MediaRelay::release) exactly once.
pub trait MediaRelay: Send {
    /// Reserves a slot and returns its id.
    ///
    /// Errors: [`RelayError::Full`] when none is free (→ 503).
    fn allocate(&mut self) -> Result<u32, RelayError>;

    /// The address written into SDP for the relay's ports.
    fn media_ip(&self) -> IpAddr;

    /// Local RTP/RTCP ports of `leg` (0 or 1) of slot `slot`.
    fn leg_ports(&self, slot: u32, leg: usize) -> LegPorts;

    /// Publishes the full configuration of a slot (both legs); the first
    /// call moves it from reserved to active.
    ///
    /// Errors: [`RelayError::Failed`] if the slot is not held.
    fn program(&mut self, slot: u32, cfg: &SlotConfig) -> Result<(), RelayError>;

    /// Gives the slot back; the relay stops forwarding and frees its ports.
    ///
    /// Errors: [`RelayError::Failed`] if the slot was not held.
    fn release(&mut self, slot: u32) -> Result<(), RelayError>;

    /// Labels the slot with the call's Call-ID (A leg), for listings and
    /// logs (`SlotTable::set_call_id`). Relays without labels ignore it.
    fn set_call_id(&mut self, _slot: u32, _call_id: &str) {}

    /// The SHA-256 fingerprint of the dataplane's DTLS certificate
    /// (RFC 8122 §5), which WebRTC legs are offered and answered with;
    /// `None` when the relay has none (a WebRTC call then gets 488).
    fn dtls_fingerprint(&self) -> Option<[u8; 32]> {
        None
    }

    /// The prompt id ([`tern_shared::table::MediaPlay::file`]) of the WAV
    /// file `wav`, published where the dataplane finds it (music on
    /// hold).
    ///
    /// Errors: [`RelayError::Failed`] when the file cannot be loaded, or
    /// the relay plays no prompts (the default).
    fn prompt(&mut self, wav: &Path) -> Result<u64, RelayError> {
        Err(RelayError::Failed(format!(
            "{}: this relay plays no media files",
            wav.display()
        )))
    }
}

/// [`MediaRelay`] over a shared-memory [`SlotTable`].
#[derive(Debug, Clone)]
pub struct ShmRelay {
    table: Arc<SlotTable>,
    /// The prompt last published (file, id): music on hold is one file.
    prompt: Option<(PathBuf, u64)>,
}

impl ShmRelay {
    /// A relay programming `table` (shared with the dataplane in-process,
    /// or mapped from another process with [`SlotTable::open`]).
    pub fn new(table: Arc<SlotTable>) -> ShmRelay {
        ShmRelay {
            table,
            prompt: None,
        }
    }

    /// Maps the table of instance `name` (`/dev/shm/tern-<name>`) created by
    /// a running `tern relay`.
    ///
    /// Errors: those of [`SlotTable::open`] (missing file, not a table,
    /// layout version mismatch).
    pub fn open(name: &str) -> Result<ShmRelay, TableError> {
        Ok(ShmRelay::new(Arc::new(SlotTable::open(name)?)))
    }

    /// The table this relay programs.
    pub fn table(&self) -> &Arc<SlotTable> {
        &self.table
    }
}

impl MediaRelay for ShmRelay {
    fn allocate(&mut self) -> Result<u32, RelayError> {
        Ok(self.table.reserve_for(tern_shared::table::Owner::Sip)?)
    }

    fn media_ip(&self) -> IpAddr {
        self.table.media_ip()
    }

    fn leg_ports(&self, slot: u32, leg: usize) -> LegPorts {
        self.table.ports(slot, leg)
    }

    fn program(&mut self, slot: u32, cfg: &SlotConfig) -> Result<(), RelayError> {
        Ok(self.table.publish(slot, cfg)?)
    }

    fn release(&mut self, slot: u32) -> Result<(), RelayError> {
        Ok(self.table.release(slot)?)
    }

    fn set_call_id(&mut self, slot: u32, call_id: &str) {
        self.table.set_call_id(slot, call_id);
    }

    fn dtls_fingerprint(&self) -> Option<[u8; 32]> {
        self.table.dtls_fingerprint()
    }

    fn prompt(&mut self, wav: &Path) -> Result<u64, RelayError> {
        if let Some((p, id)) = &self.prompt {
            // Still there (a restarted relay may have a fresh /dev/shm).
            let at = tern_shared::prompt::prompt_path(self.table.path(), *id);
            if p == wav && at.exists() {
                return Ok(*id);
            }
        }
        let (id, _) = tern_shared::prompt::load_and_publish(self.table.path(), wav)
            .map_err(|e| RelayError::Failed(format!("{}: {e}", wav.display())))?;
        self.prompt = Some((wav.to_path_buf(), id));
        Ok(id)
    }
}
