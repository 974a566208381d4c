//! The storage task: group commit of the core's records, then compaction when due.
//!
//! Records wait `flush_delay_ms` for company, are appended with one fsync, and only then is
//! the output that depended on them released (the core holds it). A failing disk (ENOSPC,
//! read-only) is retried with the batch kept, logged once per failure streak; nothing
//! is acknowledged meanwhile.

use std::sync::Arc;
use std::time::Duration;

use smol::channel::Receiver;

use super::Shared;
use crate::db::Record;
use crate::storage::{FileStore, Store};

const RETRY_DELAY: Duration = Duration::from_secs(1);

pub async fn run(shared: Arc<Shared>, store: FileStore, wake: Receiver<()>, flush_delay_ms: u32) {
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
            let seq = {
                let mut st = shared.lock();
                st.core.take_records(&mut batch)
            };
            let Some(seq) = seq else { break };
            loop {
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
                        break;
                    }
                    Err(e) => {
                        if !failing {
                            log::error!(
                                "cannot write to the store: {e}; changes are held and retried"
                            );
                            failing = true;
                        }
                        smol::Timer::after(RETRY_DELAY).await;
                    }
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
