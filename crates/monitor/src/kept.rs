//! The last window's summaries of each monitored table, kept in the process between
//! refreshes. An incremental refresh after new rows compares its first new window with them
//! instead of reading the window before it again, which was most of what it read (a day of
//! history for a few new rows). They are keyed by the table version they reflect, so a
//! refresh that another replica or the CLI made in between only misses them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::compute::Summaries;
use crate::windows::Window;

/// At most this much is kept, the least recently kept dropped first.
pub const KEPT_BYTES: usize = 256 << 20;

struct Entry {
    table_id: String,
    monitor_version: i64,
    granularity: String,
    /// The version of the monitored table the summaries reflect.
    source_version: i64,
    window: Window,
    summaries: Arc<Summaries>,
    bytes: usize,
}

static KEPT: Mutex<VecDeque<Entry>> = Mutex::new(VecDeque::new());

fn kept() -> MutexGuard<'static, VecDeque<Entry>> {
    // Entries are whole once pushed: a panic elsewhere leaves nothing half made.
    KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The windows kept for the monitor on `table_id` at `monitor_version` as of table version
/// `source_version`, by granularity.
pub fn kept_at(
    table_id: &str,
    monitor_version: i64,
    source_version: i64,
) -> BTreeMap<String, (Window, Arc<Summaries>)> {
    kept()
        .iter()
        .filter(|e| {
            e.table_id == table_id
                && e.monitor_version == monitor_version
                && e.source_version == source_version
        })
        .map(|e| (e.granularity.clone(), (e.window, e.summaries.clone())))
        .collect()
}

/// Keeps, for each granularity, the latest of the windows a refresh at `source_version`
/// summarized (`last`) and those kept before it (`before`, as of the refresh's previous version)
/// that its commits did not touch, replacing what was kept for the table.
pub fn keep(
    table_id: &str,
    monitor_version: i64,
    source_version: i64,
    last: BTreeMap<String, (Window, Summaries)>,
    before: BTreeMap<String, (Window, Arc<Summaries>)>,
    touched: Option<&BTreeMap<String, BTreeSet<Window>>>,
) {
    let mut latest: BTreeMap<String, (Window, Arc<Summaries>)> = last
        .into_iter()
        .map(|(granularity, (window, summaries))| (granularity, (window, Arc::new(summaries))))
        .collect();
    for (granularity, (window, summaries)) in before {
        let untouched = touched.is_some_and(|touched| {
            touched
                .get(&granularity)
                .is_none_or(|windows| !windows.contains(&window))
        });
        let later = latest
            .get(&granularity)
            .is_none_or(|(w, _)| w.start < window.start);
        if untouched && later {
            latest.insert(granularity, (window, summaries));
        }
    }
    let mut kept = kept();
    kept.retain(|e| e.table_id != table_id);
    for (granularity, (window, summaries)) in latest {
        let bytes = summaries.bytes();
        if bytes > KEPT_BYTES {
            continue;
        }
        kept.push_back(Entry {
            table_id: table_id.to_string(),
            monitor_version,
            granularity,
            source_version,
            window,
            summaries,
            bytes,
        });
    }
    while kept.iter().map(|e| e.bytes).sum::<usize>() > KEPT_BYTES {
        kept.pop_front();
    }
}

/// Drops what is kept for the table (its monitor was deleted).
pub fn forget(table_id: &str) {
    kept().retain(|e| e.table_id != table_id);
}
