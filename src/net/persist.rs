//! The storage task: group commit of the core's records, then compaction when due.
//!
//! Records wait `flush_delay_ms` for company and are appended with one fsync; only then
//! is the output that depended on them released (the core holds it). When the store
//! fails (ENOSPC, a read-only data dir), the core undoes the changes and tells each
//! requester (`<resource-constraint/>`); the server goes on serving. The failure is
//! logged once per streak, and recovery once.

use std::sync::Arc;
use std::time::Duration;

use smol::channel::Receiver;

use super::Shared;
use crate::db::Record;
use crate::storage::Store;

pub async fn run<S: Store + 'static>(
    shared: Arc<Shared>,
    store: S,
    wake: Receiver<()>,
    flush_delay_ms: u32,
) {
    let mut store = Some(store);
    let mut batch: Vec<Record> = Vec::new();
    let mut scratch = Vec::new();
    let mut failing = false;
    loop {
        if wake.recv().await.is_err() {
            return;
        }
        if flush_delay_ms > 0 {
            smol::Timer::after(Duration::from_millis(u64::from(flush_delay_ms))).await;
        }
        loop {
            let seq = shared.lock().core.take_records(&mut batch);
            let Some(seq) = seq else { break };
            let Some(s) = store.take() else { return };
            let b = std::mem::take(&mut batch);
            let (s, b, result) = smol::unblock(move || {
                let mut s = s;
                let r = s.append(&b);
                (s, b, r)
            })
            .await;
            store = Some(s);
            batch = b;
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
        if store.as_ref().is_some_and(|s| s.wants_compaction()) {
            let db = shared.lock().core.db().clone();
            let Some(s) = store.take() else { return };
            let (s, result) = smol::unblock(move || {
                let mut s = s;
                let r = s.compact(&db);
                (s, r)
            })
            .await;
            store = Some(s);
            match result {
                Ok(()) => log::info!("store compacted"),
                Err(e) => log::error!(
                    "store compaction failed (the log keeps growing until it succeeds): {e}"
                ),
            }
        }
    }
}
