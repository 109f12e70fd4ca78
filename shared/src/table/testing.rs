//! Temporary tables for tests (of this crate and of the planes): a fresh
//! `/dev/shm/tern-test-<name>-<pid>` file that is removed when the guard
//! drops, so tests never share or leak a table.

use std::net::IpAddr;
use std::ops::Deref;
use std::sync::Arc;

use super::layout::SlotTable;
use super::types::{TableError, TableParams};

/// A table that exists for the life of the guard; derefs to the shared
/// [`SlotTable`] handle that workers and programmers take.
#[derive(Debug)]
pub struct TempTable {
    table: Arc<SlotTable>,
}

impl TempTable {
    /// A table for `workers` workers over ports `lo..=hi` (four per slot)
    /// with media address 127.0.0.1, named after `name` and this process.
    /// A stale file of the same name (a crashed earlier run) is replaced.
    ///
    /// Errors: those of [`SlotTable::create_or_attach`].
    pub fn new(name: &str, lo: u16, hi: u16, workers: u32) -> Result<TempTable, TableError> {
        TempTable::with_media_ip(name, lo, hi, workers, IpAddr::from([127, 0, 0, 1]))
    }

    /// [`TempTable::new`] advertising `media_ip` in SDP.
    ///
    /// Errors: those of [`SlotTable::create_or_attach`].
    pub fn with_media_ip(
        name: &str,
        lo: u16,
        hi: u16,
        workers: u32,
        media_ip: IpAddr,
    ) -> Result<TempTable, TableError> {
        let instance = format!("test-{name}-{}", std::process::id());
        let _ = std::fs::remove_file(super::table_path(&instance));
        let table = SlotTable::create_or_attach(
            &instance,
            TableParams {
                port_lo: lo,
                port_hi: hi,
                workers,
                media_ip,
            },
        )?;
        Ok(TempTable {
            table: Arc::new(table),
        })
    }

    /// The shared handle (clone it into workers and cores).
    pub fn arc(&self) -> Arc<SlotTable> {
        self.table.clone()
    }
}

impl Deref for TempTable {
    type Target = Arc<SlotTable>;
    fn deref(&self) -> &Arc<SlotTable> {
        &self.table
    }
}

impl Drop for TempTable {
    fn drop(&mut self) {
        let _ = self.table.unlink();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_table_is_fresh_and_removed_on_drop() {
        let path = {
            let t = TempTable::new("temp-guard", 45000, 45099, 1).unwrap();
            assert_eq!(t.capacity(), 25);
            let id = t.reserve().unwrap();
            t.release(id).unwrap();
            let path = t.path().to_path_buf();
            assert!(path.exists());
            // A second guard of the same name starts from scratch.
            path
        };
        assert!(!path.exists(), "removed on drop");
        let t = TempTable::new("temp-guard", 45000, 45099, 1).unwrap();
        assert_eq!(t.count(crate::table::SlotState::Free), 25);
    }
}
