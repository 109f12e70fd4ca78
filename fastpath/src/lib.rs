#![warn(missing_docs)]
//! tern's kernel fast path (DESIGN.md "The fast path"): a tc (cls_bpf)
//! or XDP program that forwards an established plain RTP stream below the
//! socket layer, from a BPF map the owning worker fills.
//!
//! - `bpf/fastpath.c`: the programs (`tern_tc`, `tern_xdp`), compiled by
//!   clang in `build.rs`; without clang the crate builds with an empty
//!   object and [`FastPath::attach`] says so.
//! - [`maps`]: the map layouts and a worker's handle on the pinned maps.
//!
//! Maps are pinned in bpffs under `/sys/fs/bpf/tern/<instance>/`, and the
//! program stays attached when the relay exits, so a relay restart keeps
//! fast-path calls flowing: the new relay reuses the pinned maps and
//! replaces the program.

use std::fmt;
use std::path::{Path, PathBuf};

use aya::programs::tc::{self, NlOptions, SchedClassifier, TcAttachOptions, TcAttachType};
use aya::programs::{Xdp, XdpFlags};
use aya::EbpfLoader;

pub mod maps;

pub use maps::{FastPathMaps, FpEntry, FpKey, FpStats, FP_FORWARD, FP_REWRITE};

/// 8-byte alignment for the ELF object: its parser reads headers in place.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

/// The compiled programs (empty when clang was missing at build time).
static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/fastpath.o")));

/// Where the fast path hooks into an interface's receive path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// tc (cls_bpf, direct action) ingress: veth, lo, anything.
    Tc,
    /// XDP in the driver where it supports it, else generic mode.
    Xdp,
}

/// Errors from loading, attaching or using the fast path.
#[derive(Debug)]
pub enum FastPathError {
    /// tern was built without the BPF object (no clang at build time).
    NotBuilt,
    /// bpffs is not mounted at `/sys/fs/bpf` and could not be mounted.
    NoBpffs(std::io::Error),
    /// Loading the object or a program was refused (no `CAP_BPF`, the
    /// verifier, an old kernel).
    Load(String),
    /// Attaching to the interface failed (no such interface, no
    /// `CAP_NET_ADMIN`).
    Attach(String),
    /// A map could not be opened or written.
    Map(String),
}

impl fmt::Display for FastPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FastPathError::NotBuilt => write!(
                f,
                "built without the BPF fast path (no clang at build time)"
            ),
            FastPathError::NoBpffs(e) => write!(f, "bpffs not mounted at /sys/fs/bpf: {e}"),
            FastPathError::Load(s) => write!(f, "cannot load the fast path: {s}"),
            FastPathError::Attach(s) => write!(f, "cannot attach the fast path: {s}"),
            FastPathError::Map(s) => write!(f, "fast-path map: {s}"),
        }
    }
}

impl std::error::Error for FastPathError {}

/// The bpffs directory of `instance`'s pinned maps.
pub fn pin_dir(instance: &str) -> PathBuf {
    Path::new("/sys/fs/bpf/tern").join(instance)
}

/// Whether this build carries the BPF programs.
pub fn built() -> bool {
    !OBJECT.0.is_empty()
}

fn ensure_bpffs() -> Result<(), FastPathError> {
    let root = Path::new("/sys/fs/bpf");
    // SAFETY: statfs on a NUL-terminated path into a zeroed struct.
    let mounted = unsafe {
        let mut s: libc::statfs = std::mem::zeroed();
        libc::statfs(c"/sys/fs/bpf".as_ptr(), &mut s) == 0 && s.f_type == 0xcafe4a11
    };
    if mounted {
        return Ok(());
    }
    std::fs::create_dir_all(root).map_err(FastPathError::NoBpffs)?;
    // SAFETY: mount(2) with static NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c"/sys/fs/bpf".as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(FastPathError::NoBpffs(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// An attached fast path.
#[derive(Debug)]
pub struct FastPath {
    iface: String,
    hook: Hook,
    dir: PathBuf,
}

impl FastPath {
    /// Loads the programs with `instance`'s maps (pinned in [`pin_dir`],
    /// reused when a previous relay left them, `entries` long for a new
    /// one) and attaches the one for `hook` to `iface`, replacing the
    /// program a previous relay left there. The attachment outlives the
    /// process (see [`FastPath::detach`]).
    ///
    /// Errors: [`FastPathError::NotBuilt`], [`FastPathError::NoBpffs`],
    /// [`FastPathError::Load`], [`FastPathError::Attach`].
    pub fn attach(
        instance: &str,
        iface: &str,
        hook: Hook,
        entries: u32,
    ) -> Result<FastPath, FastPathError> {
        if !built() {
            return Err(FastPathError::NotBuilt);
        }
        ensure_bpffs()?;
        let dir = pin_dir(instance);
        std::fs::create_dir_all(&dir)
            .map_err(|e| FastPathError::Load(format!("{}: {e}", dir.display())))?;
        let n = entries.max(2);
        let mut ebpf = EbpfLoader::new()
            .map_pin_path(&dir)
            .set_max_entries("tern_fwd", n)
            .set_max_entries("tern_stats", n)
            .set_max_entries("tern_folded", n)
            .load(&OBJECT.0)
            .map_err(|e| FastPathError::Load(e.to_string()))?;
        let load = |e: aya::programs::ProgramError| FastPathError::Load(e.to_string());
        let attach =
            |e: aya::programs::ProgramError| FastPathError::Attach(format!("{iface}: {e}"));
        match hook {
            Hook::Tc => {
                let p: &mut SchedClassifier = ebpf
                    .program_mut("tern_tc")
                    .ok_or_else(|| FastPathError::Load("no tern_tc in the object".into()))?
                    .try_into()
                    .map_err(load)?;
                p.load().map_err(load)?;
                // An existing clsact qdisc is fine (EEXIST).
                let _ = tc::qdisc_add_clsact(iface);
                let _ = tc::qdisc_detach_program(iface, TcAttachType::Ingress, "tern_tc");
                let id = p
                    .attach_with_options(
                        iface,
                        TcAttachType::Ingress,
                        TcAttachOptions::Netlink(NlOptions::default()),
                    )
                    .map_err(attach)?;
                // A netlink filter holds the program: leaked, it outlives us.
                let link = p.take_link(id).map_err(attach)?;
                std::mem::forget(link);
            }
            Hook::Xdp => {
                let p: &mut Xdp = ebpf
                    .program_mut("tern_xdp")
                    .ok_or_else(|| FastPathError::Load("no tern_xdp in the object".into()))?
                    .try_into()
                    .map_err(load)?;
                p.load().map_err(load)?;
                let id = p
                    .attach(iface, XdpFlags::default())
                    .or_else(|_| p.attach(iface, XdpFlags::SKB_MODE))
                    .map_err(attach)?;
                let link = p.take_link(id).map_err(attach)?;
                std::mem::forget(link);
            }
        }
        Ok(FastPath {
            iface: iface.to_string(),
            hook,
            dir,
        })
    }

    /// The pinned maps' directory, for [`FastPathMaps::open`].
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The interface it is attached to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The hook in use.
    pub fn hook(&self) -> Hook {
        self.hook
    }

    /// Detaches the program and removes the pinned maps: the end of the
    /// instance's fast path (not a restart).
    pub fn detach(self) {
        match self.hook {
            Hook::Tc => {
                let _ = tc::qdisc_detach_program(&self.iface, TcAttachType::Ingress, "tern_tc");
            }
            Hook::Xdp => detach_xdp(&self.iface),
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes whatever XDP program `iface` has (netlink, `ip link set xdp off`).
fn detach_xdp(iface: &str) {
    let _ = std::process::Command::new("ip")
        .args(["link", "set", "dev", iface, "xdp", "off"])
        .status();
}
