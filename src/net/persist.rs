//! The storage task: group commit of the core's records and archive writes, MAM queries,
//! then compaction and retention when due.
//!
//! Changes wait `flush_delay_ms` for company and are appended with one write and one
//! fsync per store (archive first, then accounts); only then is the output that depended
//! on them released (the core holds it). When a store fails (ENOSPC, a read-only data
//! dir), the core undoes the changes and tells each requester (`<resource-constraint/>`);
//! the server goes on serving. The failure is logged once per streak, and recovery once.
//! Archive queries read segment files in a blocking thread and hand the page back.

use std::sync::Arc;
use std::time::Duration;

use smol::channel::Receiver;

use super::{Shared, unix_ms};
use crate::archive::{ArchiveRecord, ArchiveRequest};
use crate::db::Record;
use crate::storage::archive::ArchiveStore;
use crate::storage::{FileStore, Store, StoreError};

/// Archive retention runs at most this often (it may delete whole segment files).
const RETENTION_INTERVAL_MS: u64 = 3_600_000;

pub struct Stores {
    pub db: FileStore,
    pub archive: ArchiveStore,
}

/// Runs `f` on the stores in a blocking thread (fsync and reads block).
async fn with_stores<T: Send + 'static>(
    stores: &mut Option<Stores>,
    f: impl FnOnce(&mut Stores) -> T + Send + 'static,
) -> Option<T> {
    let mut s = stores.take()?;
    let (s, out) = smol::unblock(move || {
        let out = f(&mut s);
        (s, out)
    })
    .await;
    *stores = Some(s);
    Some(out)
}

fn write_batch(
    s: &mut Stores,
    archive: &[ArchiveRecord],
    records: &[Record],
) -> Result<(), StoreError> {
    if !archive.is_empty() {
        s.archive.append(archive)?;
    }
    if !records.is_empty() {
        s.db.append(records)?;
    }
    Ok(())
}

pub async fn run(shared: Arc<Shared>, stores: Stores, wake: Receiver<()>, flush_delay_ms: u32) {
    let mut stores = Some(stores);
    let mut scratch = Vec::new();
    let mut failing = false;
    let mut last_retention = 0u64;
    loop {
        if wake.recv().await.is_err() {
            return;
        }
        if flush_delay_ms > 0 {
            smol::Timer::after(Duration::from_millis(u64::from(flush_delay_ms))).await;
        }
        loop {
            let mut records: Vec<Record> = Vec::new();
            let mut archive: Vec<ArchiveRecord> = Vec::new();
            let seq = {
                let mut st = shared.lock();
                let seq = st.core.take_records(&mut records);
                st.core.take_archive(&mut archive);
                seq
            };
            let Some(seq) = seq else { break };
            let Some(result) =
                with_stores(&mut stores, move |s| write_batch(s, &archive, &records)).await
            else {
                return;
            };
            match result {
                Ok(()) => {
                    if failing {
                        log::info!("the store is writable again");
                        failing = false;
                    }
                    let mut st = shared.lock();
                    st.core.records_committed(seq);
                    shared.dispatch(&mut st, &mut scratch);
                    drop(st);
                    shared.mark_committed(seq);
                }
                Err(e) => {
                    if !failing {
                        log::error!(
                            "cannot write to the store: {e}; changes are refused until it works again"
                        );
                        failing = true;
                    }
                    let mut st = shared.lock();
                    let given_up = st.core.records_failed();
                    shared.dispatch(&mut st, &mut scratch);
                    drop(st);
                    shared.mark_failed(given_up);
                }
            }
        }
        answer_queries(&shared, &mut stores, &mut scratch).await;
        if stores.as_ref().is_some_and(|s| s.db.wants_compaction()) {
            let db = shared.lock().core.db().clone();
            match with_stores(&mut stores, move |s| s.db.compact(&db)).await {
                Some(Ok(())) => log::info!("store compacted"),
                Some(Err(e)) => log::error!(
                    "store compaction failed (the log keeps growing until it succeeds): {e}"
                ),
                None => return,
            }
        }
        let now = unix_ms();
        if now.saturating_sub(last_retention) >= RETENTION_INTERVAL_MS {
            last_retention = now;
            if let Some(Err(e)) =
                with_stores(&mut stores, move |s| s.archive.enforce_retention(now)).await
            {
                log::error!("archive retention failed: {e}");
            }
        }
    }
}

/// Runs the MAM queries the core queued and hands each page back.
async fn answer_queries(
    shared: &Shared,
    stores: &mut Option<Stores>,
    scratch: &mut Vec<crate::router::ConnId>,
) {
    loop {
        let mut requests: Vec<ArchiveRequest> = Vec::new();
        shared.lock().core.take_archive_requests(&mut requests);
        if requests.is_empty() {
            return;
        }
        for req in requests {
            let now = unix_ms();
            let token = req.token;
            let page = with_stores(stores, move |s| s.archive.query(&req.query, now)).await;
            let page = match page {
                Some(Ok(p)) => Ok(p),
                Some(Err(e)) => {
                    log::error!("archive query failed: {e}");
                    Err(())
                }
                None => return,
            };
            let mut st = shared.lock();
            st.core.archive_answer(token, page);
            shared.dispatch(&mut st, scratch);
        }
    }
}
