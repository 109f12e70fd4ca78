//! The table file: create, attach, open, unlink, and its geometry (ports
//! and workers as functions of the slot index).

use std::fs::OpenOptions;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use memmap2::MmapRaw;

use super::layout::*;
use super::types::*;

impl SlotTable {
    /// Creates the table for `instance`, or reattaches to an existing one of
    /// the same layout version and parameters without touching its slots.
    /// An existing table with other parameters is recreated only if it has no
    /// active slots.
    ///
    /// Errors: [`TableError::Io`], [`TableError::VersionMismatch`],
    /// [`TableError::InUseWithOtherLayout`], [`TableError::BadParams`].
    pub fn create_or_attach(instance: &str, params: TableParams) -> Result<SlotTable, TableError> {
        if !valid_instance(instance) {
            return Err(TableError::BadParams(format!(
                "instance name {instance:?}: use letters, digits, '-', '_' or '.'"
            )));
        }
        let capacity = params.capacity();
        if capacity == 0 {
            return Err(TableError::BadParams(format!(
                "port range {}-{} holds no slot (each needs {PORTS_PER_SLOT} ports)",
                params.port_lo, params.port_hi
            )));
        }
        if params.workers == 0 || params.workers as usize > MAX_WORKERS {
            return Err(TableError::BadParams(format!(
                "{} workers (1..={MAX_WORKERS})",
                params.workers
            )));
        }
        if params.workers > capacity {
            return Err(TableError::BadParams(format!(
                "{} workers but only {capacity} slots in the port range",
                params.workers
            )));
        }
        let path = table_path(instance);
        match SlotTable::open_path(path.clone()) {
            Ok(t) => {
                if t.capacity == capacity
                    && t.workers == params.workers
                    && t.port_lo == params.port_lo
                {
                    t.set_media_ip(params.media_ip);
                    return Ok(t);
                }
                if t.count(SlotState::Active) + t.count(SlotState::Reserved) > 0 {
                    return Err(TableError::InUseWithOtherLayout(path));
                }
                drop(t);
                let _ = std::fs::remove_file(&path);
            }
            Err(TableError::Io(_, e)) if e.kind() == io::ErrorKind::NotFound => {}
            Err(TableError::NotATable(_)) => {
                let _ = std::fs::remove_file(&path);
            }
            // Left by an older (or newer) tern that is gone: nothing can
            // resume from another layout, so start afresh.
            Err(TableError::VersionMismatch { .. }) if !dataplane_alive(&path) => {
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => return Err(e),
        }
        SlotTable::create_new(path, params, capacity)
    }

    fn create_new(
        path: PathBuf,
        params: TableParams,
        capacity: u32,
    ) -> Result<SlotTable, TableError> {
        let io = |e| TableError::Io(path.clone(), e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io)?;
        file.set_len(file_len(capacity) as u64).map_err(io)?;
        let map = MmapRaw::map_raw(&file).map_err(io)?;
        let t = SlotTable {
            map,
            path: path.clone(),
            capacity,
            workers: params.workers,
            port_lo: params.port_lo,
        };
        let h = t.header();
        h.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        h.capacity.store(capacity, Ordering::Relaxed);
        h.workers.store(params.workers, Ordering::Relaxed);
        h.ports.store(
            u32::from(params.port_lo) | u32::from(params.port_hi) << 16,
            Ordering::Relaxed,
        );
        h.created_ms
            .store(crate::clock::unix_ms(), Ordering::Relaxed);
        t.set_media_ip(params.media_ip);
        // Magic last: a reader that sees it sees a complete header.
        h.magic.store(MAGIC, Ordering::Release);
        Ok(t)
    }

    /// Maps the existing table of `instance` (the side that programs slots).
    ///
    /// Errors: [`TableError::Io`] (e.g. no relay has created it),
    /// [`TableError::NotATable`], [`TableError::VersionMismatch`].
    pub fn open(instance: &str) -> Result<SlotTable, TableError> {
        if !valid_instance(instance) {
            return Err(TableError::BadParams(format!("instance name {instance:?}")));
        }
        SlotTable::open_path(table_path(instance))
    }

    fn open_path(path: PathBuf) -> Result<SlotTable, TableError> {
        let io = |e| TableError::Io(path.clone(), e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len() as usize;
        if len < SLOTS_OFFSET {
            return Err(TableError::NotATable(path));
        }
        let map = MmapRaw::map_raw(&file).map_err(io)?;
        // SAFETY: the mapping is at least SLOTS_OFFSET long, page-aligned.
        let h = unsafe { &*(map.as_ptr() as *const Header) };
        if h.magic.load(Ordering::Acquire) != MAGIC {
            return Err(TableError::NotATable(path));
        }
        let version = h.version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(TableError::VersionMismatch {
                path,
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        let capacity = h.capacity.load(Ordering::Relaxed);
        let workers = h.workers.load(Ordering::Relaxed);
        let port_lo = h.ports.load(Ordering::Relaxed) as u16;
        if len < file_len(capacity) || workers == 0 || workers as usize > MAX_WORKERS {
            return Err(TableError::NotATable(path));
        }
        Ok(SlotTable {
            map,
            path,
            capacity,
            workers,
            port_lo,
        })
    }

    /// Path of the shared-memory file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Number of slots.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Number of workers the table is laid out for.
    pub fn workers(&self) -> u32 {
        self.workers
    }

    /// Inclusive port range.
    pub fn port_range(&self) -> (u16, u16) {
        let p = self.header().ports.load(Ordering::Relaxed);
        (p as u16, (p >> 16) as u16)
    }

    /// The address the relay advertises in SDP.
    pub fn media_ip(&self) -> IpAddr {
        let h = self.header();
        let w = [
            h.media_ip[0].load(Ordering::Relaxed),
            h.media_ip[1].load(Ordering::Relaxed),
        ];
        words_ip(w, h.media_family.load(Ordering::Relaxed) as u8)
    }

    /// Sets the advertised media address.
    pub fn set_media_ip(&self, ip: IpAddr) {
        let h = self.header();
        let (w, fam) = ip_words(ip);
        h.media_ip[0].store(w[0], Ordering::Relaxed);
        h.media_ip[1].store(w[1], Ordering::Relaxed);
        h.media_family.store(u32::from(fam), Ordering::Relaxed);
    }

    /// Names the relay's local interfaces (at most [`MAX_INTERFACES`]):
    /// leg configurations refer to them by index. Set by the dataplane
    /// before its workers start, which bind every port on each `ip`. An
    /// empty list leaves one interface, [`SlotTable::media_ip`].
    ///
    /// Errors: [`TableError::BadParams`] for more than [`MAX_INTERFACES`].
    pub fn set_interfaces(&self, list: &[LocalInterface]) -> Result<(), TableError> {
        if list.len() > MAX_INTERFACES {
            return Err(TableError::BadParams(format!(
                "{} interfaces (at most {MAX_INTERFACES})",
                list.len()
            )));
        }
        let h = self.header();
        h.iface_count.store(0, Ordering::Release);
        for (w, i) in h.ifaces.iter().zip(list) {
            let (ip, f1) = ip_words(i.ip);
            let (adv, f2) = ip_words(i.advertised);
            for k in 0..2 {
                w.ip[k].store(ip[k], Ordering::Relaxed);
                w.advertised[k].store(adv[k], Ordering::Relaxed);
            }
            w.families
                .store(u64::from(f1) | u64::from(f2) << 8, Ordering::Relaxed);
        }
        h.iface_count.store(list.len() as u64, Ordering::Release);
        Ok(())
    }

    /// How many interfaces [`SlotTable::set_interfaces`] named (0: none;
    /// the one interface is then [`SlotTable::media_ip`]).
    pub fn interface_count(&self) -> usize {
        (self.header().iface_count.load(Ordering::Acquire) as usize).min(MAX_INTERFACES)
    }

    /// The relay's local interfaces, index `i` being [`LegConfig::iface`]
    /// `i`: never empty (without a list, the one interface is
    /// [`SlotTable::media_ip`], bound and advertised).
    pub fn interfaces(&self) -> Vec<LocalInterface> {
        let h = self.header();
        let n = self.interface_count();
        if n == 0 {
            let ip = self.media_ip();
            return vec![LocalInterface { ip, advertised: ip }];
        }
        h.ifaces[..n]
            .iter()
            .map(|w| {
                let fam = w.families.load(Ordering::Relaxed);
                let load = |a: &[std::sync::atomic::AtomicU64; 2]| {
                    [a[0].load(Ordering::Relaxed), a[1].load(Ordering::Relaxed)]
                };
                LocalInterface {
                    ip: words_ip(load(&w.ip), fam as u8),
                    advertised: words_ip(load(&w.advertised), (fam >> 8) as u8),
                }
            })
            .collect()
    }

    /// Records the dataplane's process id.
    pub fn set_dataplane_pid(&self, pid: u32) {
        self.header().dataplane_pid.store(pid, Ordering::Relaxed);
    }

    /// The dataplane's process id, 0 if unknown.
    pub fn dataplane_pid(&self) -> u32 {
        self.header().dataplane_pid.load(Ordering::Relaxed)
    }

    /// Local ports of `leg` (0 or 1) of slot `id`.
    pub fn ports(&self, id: u32, leg: usize) -> LegPorts {
        let base = u32::from(self.port_lo) + id * PORTS_PER_SLOT + (leg as u32 & 1) * 2;
        LegPorts {
            rtp: base as u16,
            rtcp: (base + 1) as u16,
        }
    }

    /// The slot whose leg RTP or RTCP port is `port`, with the leg index.
    pub fn slot_of_port(&self, port: u16) -> Option<(u32, usize)> {
        let off = u32::from(port).checked_sub(u32::from(self.port_lo))?;
        let id = off / PORTS_PER_SLOT;
        (id < self.capacity).then_some((id, (off % PORTS_PER_SLOT / 2) as usize))
    }

    /// The worker that owns slot `id` (contiguous blocks of slots).
    pub fn worker_of(&self, id: u32) -> u32 {
        ((u64::from(id) * u64::from(self.workers)) / u64::from(self.capacity)) as u32
    }

    /// The slots owned by worker `w`.
    pub fn slots_of_worker(&self, w: u32) -> std::ops::Range<u32> {
        let start = |w: u32| {
            // Smallest id with worker_of(id) >= w.
            ((u64::from(w) * u64::from(self.capacity)).div_ceil(u64::from(self.workers))) as u32
        };
        start(w).min(self.capacity)..start(w + 1).min(self.capacity)
    }

    /// Removes the shared-memory file (the mapping stays valid until drop).
    pub fn unlink(&self) -> io::Result<()> {
        std::fs::remove_file(&self.path)
    }
}
