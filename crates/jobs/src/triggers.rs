//! Schedules and triggers: when a job starts a run by itself. A Quartz `schedule` and a
//! `trigger.periodic` fire by the clock; `trigger.table_update`, `trigger.model` and
//! `trigger.alert` by what the event stream says happened (commits to the listed tables,
//! whoever wrote them; a model created, a version ready, an alias set; an alert changed to
//! TRIGGERED, whose details become job parameters), with `min_time_between_triggers_seconds` and
//! `wait_after_last_change_seconds`; `trigger.file_arrival` by new files in a local directory,
//! listed every few seconds into `files.arrived` events (a file is new when it is newer than
//! the newest seen before, so files there when the trigger was armed never fire it). What each job's triggers have seen is
//! kept in the store,
//! so a restarted or another server's runner goes on from there. The decisions are pure
//! functions of the job, its state, the event and the time; `Triggers` keeps them for the
//! runner, which holds the lease that makes one process fire.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tarn_core::events::{Change, Event};
use tarn_core::jobs::{Job, trigger};
use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};

use crate::cron::{Cron, time_zone};
use crate::runs::{self, Wakeup};
use crate::settings::{JobSettings, Trigger, watched_directory};

/// The event stream's consumer name for job triggers.
pub const CONSUMER: &str = "job_triggers";
/// Events taken from the stream per pass.
const EVENT_BATCH: u64 = 500;
/// How often a file arrival trigger's directory is listed.
const FILE_POLL: i64 = 2_000;
/// The most files a watched directory may hold (Databricks' limit too): past it the trigger
/// does not fire, and says why in the server's log.
pub const MAX_WATCHED_FILES: usize = 10_000;
/// The most new files a `files.arrived` event names (it counts them all).
const ARRIVALS_NAMED: usize = 100;

/// What a job's triggers have seen since it last fired.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TriggerState {
    /// When it last started a run by itself (0: never).
    #[serde(default)]
    pub last_fired: i64,
    /// When the clock-driven triggers were first armed: a periodic trigger counts from here
    /// until it first fires.
    #[serde(default)]
    pub armed_at: i64,
    /// Watched tables committed to since it last fired, with the last commit's time.
    #[serde(default)]
    pub updated_tables: BTreeMap<String, i64>,
    /// The last matching model event since it last fired.
    #[serde(default)]
    pub model_changed: Option<i64>,
    /// file_arrival: the newest modification time among the files seen, and the files that
    /// have it; `None` until the directory was first listed.
    #[serde(default)]
    pub files_seen: Option<(i64, BTreeSet<String>)>,
    /// file_arrival: when new files were last noticed since it last fired.
    #[serde(default)]
    pub files_arrived: Option<i64>,
    /// alert: the latest change to TRIGGERED since it last fired, with the parameters it
    /// gives the run.
    #[serde(default)]
    pub alert_triggered: Option<AlertTriggered>,
}

/// An alert's change to TRIGGERED, as a job's alert trigger keeps it until it fires.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertTriggered {
    pub at: i64,
    pub parameters: BTreeMap<String, String>,
}

fn unpaused(pause_status: Option<&str>) -> bool {
    pause_status != Some("PAUSED")
}

/// When a clock-driven trigger next fires after `state`'s last fire (or its arming), if the
/// job has an unpaused one: the schedule's next Quartz time, or the periodic interval.
pub fn next_fire(settings: &JobSettings, state: &TriggerState) -> Option<i64> {
    let since = state.last_fired.max(state.armed_at);
    let schedule = settings
        .schedule
        .as_ref()
        .filter(|schedule| unpaused(schedule.pause_status.as_deref()))
        .and_then(|schedule| {
            let cron: Cron = schedule.quartz_cron_expression.parse().ok()?;
            let zone = time_zone(&schedule.timezone_id).ok()?;
            let after = DateTime::<Utc>::from_timestamp_millis(since)?;
            Some(cron.next_after(after, zone)?.timestamp_millis())
        });
    let periodic = active_trigger(settings)
        .and_then(|trigger| trigger.periodic.as_ref())
        .and_then(|periodic| {
            let unit = match periodic.unit.as_str() {
                "MINUTES" => 60_000,
                "HOURS" => 3_600_000,
                "DAYS" => 86_400_000,
                "WEEKS" => 604_800_000,
                _ => return None,
            };
            Some(since.saturating_add(periodic.interval.max(1).saturating_mul(unit)))
        });
    match (schedule, periodic) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn active_trigger(settings: &JobSettings) -> Option<&Trigger> {
    settings
        .trigger
        .as_ref()
        .filter(|trigger| unpaused(trigger.pause_status.as_deref()))
}

/// Notes what an event means for a job's table and model triggers; whether it mattered.
pub fn observe(settings: &JobSettings, state: &mut TriggerState, event: &Event) -> bool {
    let Some(trigger) = active_trigger(settings) else {
        return false;
    };
    let table_update = trigger.table_update.as_ref().or(trigger.table.as_ref());
    match &event.change {
        Change::TableCommitted { full_name, .. } => {
            let Some(watch) = table_update else {
                return false;
            };
            let Some(name) = watch
                .table_names
                .iter()
                .find(|name| name.eq_ignore_ascii_case(full_name))
            else {
                return false;
            };
            state
                .updated_tables
                .insert(name.to_lowercase(), event.timestamp);
            true
        }
        Change::FilesArrived { location, .. } => {
            let watched = trigger
                .file_arrival
                .as_ref()
                .and_then(|files| watched_directory(&files.url).ok());
            if watched.is_none_or(|directory| directory != Path::new(location)) {
                return false;
            }
            state.files_arrived = Some(event.timestamp);
            true
        }
        Change::AlertStateChanged(change) => {
            let watched = trigger
                .alert
                .as_ref()
                .is_some_and(|alert| alert.alert_id == change.alert_id);
            // A change into TRIGGERED; a retrigger (already TRIGGERED) is for webhooks.
            if !watched || change.state != "TRIGGERED" || change.previous_state == "TRIGGERED" {
                return false;
            }
            let parameters = [
                ("alert_id", Some(&change.alert_id)),
                ("alert_name", Some(&change.display_name)),
                ("alert_state", Some(&change.state)),
                ("alert_value", change.value.as_ref()),
                ("alert_threshold", change.threshold.as_ref()),
            ]
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_string(), value?.clone())))
            .collect();
            state.alert_triggered = Some(AlertTriggered {
                at: event.timestamp,
                parameters,
            });
            true
        }
        change => {
            let Some(model) = &trigger.model else {
                return false;
            };
            let (name, matches) = match change {
                Change::ModelCreated { name, .. } => (name, model.condition == "MODEL_CREATED"),
                Change::VersionCreated { name, .. } => {
                    (name, model.condition == "MODEL_VERSION_READY")
                }
                Change::AliasSet { name, alias, .. } => (
                    name,
                    model.condition == "MODEL_ALIAS_SET"
                        && (model.aliases.is_empty() || model.aliases.contains(alias)),
                ),
                _ => return false,
            };
            let named = model
                .securable_name
                .as_deref()
                .is_none_or(|securable| securable.eq_ignore_ascii_case(name));
            if matches && named {
                state.model_changed = Some(event.timestamp);
            }
            matches && named
        }
    }
}

/// The files of a listing of a file arrival trigger's directory (relative path, modification
/// time in ms) that are new since the last listing, in path order; notes the listing in
/// `state`. The first listing only arms the trigger: nothing there is new.
pub fn new_files(state: &mut TriggerState, listing: &[(String, i64)]) -> Vec<String> {
    let Some((watermark, at_watermark)) = &state.files_seen else {
        state.files_seen = Some(high_water(listing, i64::MIN));
        return Vec::new();
    };
    let mut arrived: Vec<String> = listing
        .iter()
        .filter(|(path, modified)| {
            *modified > *watermark || (*modified == *watermark && !at_watermark.contains(path))
        })
        .map(|(path, _)| path.clone())
        .collect();
    if !arrived.is_empty() {
        let mut seen = high_water(listing, *watermark);
        if seen.0 == *watermark {
            // Files at the same time as the newest before: they are seen now too.
            seen.1.extend(at_watermark.iter().cloned());
        }
        state.files_seen = Some(seen);
        arrived.sort();
    }
    arrived
}

/// The newest modification time in `listing` (at least `floor`) and the files that have it.
fn high_water(listing: &[(String, i64)], floor: i64) -> (i64, BTreeSet<String>) {
    let newest = listing
        .iter()
        .map(|(_, modified)| *modified)
        .max()
        .unwrap_or(floor)
        .max(floor);
    let files = listing
        .iter()
        .filter(|(_, modified)| *modified == newest)
        .map(|(path, _)| path.clone())
        .collect();
    (newest, files)
}

/// The files under `directory` at any depth (symbolic links not followed), with their
/// modification times; refused past [`MAX_WATCHED_FILES`].
pub fn list_files(directory: &Path) -> Result<Vec<(String, i64)>> {
    let mut found = Vec::new();
    let mut folders = vec![directory.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            // A directory not made yet holds no files.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && folder == directory => {
                return Ok(found);
            }
            Err(err) => {
                return Err(Error::invalid(format!(
                    "cannot list {}: {err}",
                    folder.display()
                )));
            }
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                folders.push(entry.path());
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            if found.len() == MAX_WATCHED_FILES {
                return Err(Error::invalid(format!(
                    "{} holds more than {MAX_WATCHED_FILES} files; a file arrival trigger \
                     watches fewer",
                    directory.display()
                )));
            }
            let modified = meta
                .modified()
                .ok()
                .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |since| since.as_millis() as i64);
            let relative = entry.path();
            let relative = relative.strip_prefix(directory).unwrap_or(&relative);
            found.push((relative.display().to_string(), modified));
        }
    }
    Ok(found)
}

/// The trigger type of the run a job starts now, if one is due: a clock trigger past its time,
/// or table or model changes that have settled (`wait_after_last_change_seconds`) and come at
/// least `min_time_between_triggers_seconds` after the last fire.
pub fn due(settings: &JobSettings, state: &TriggerState, now: i64) -> Option<&'static str> {
    if next_fire(settings, state).is_some_and(|at| at <= now) {
        return Some(trigger::PERIODIC);
    }
    let trigger = active_trigger(settings)?;
    let settled = |last_change: i64, wait: Option<i64>, min_between: Option<i64>| {
        now.saturating_sub(last_change) >= wait.unwrap_or(0).saturating_mul(1000)
            && (state.last_fired == 0
                || now.saturating_sub(state.last_fired)
                    >= min_between.unwrap_or(0).saturating_mul(1000))
    };
    if let Some(watch) = trigger.table_update.as_ref().or(trigger.table.as_ref())
        && !state.updated_tables.is_empty()
    {
        let all = watch.condition.as_deref() == Some("ALL_UPDATED");
        let complete = !all
            || watch
                .table_names
                .iter()
                .all(|name| state.updated_tables.contains_key(&name.to_lowercase()));
        let last_change = state.updated_tables.values().copied().max().unwrap_or(0);
        if complete
            && settled(
                last_change,
                watch.wait_after_last_change_seconds,
                watch.min_time_between_triggers_seconds,
            )
        {
            return Some(trigger::TABLE);
        }
    }
    if let (Some(files), Some(arrived)) = (&trigger.file_arrival, state.files_arrived)
        && settled(
            arrived,
            files.wait_after_last_change_seconds,
            files.min_time_between_triggers_seconds,
        )
    {
        return Some(trigger::FILE_ARRIVAL);
    }
    if let (Some(model), Some(changed)) = (&trigger.model, state.model_changed)
        && settled(
            changed,
            model.wait_after_last_change_seconds,
            model.min_time_between_triggers_seconds,
        )
    {
        return Some(trigger::MODEL);
    }
    if let (Some(alert), Some(triggered)) = (&trigger.alert, &state.alert_triggered)
        && settled(triggered.at, None, alert.min_time_between_triggers_seconds)
    {
        return Some(trigger::ALERT);
    }
    None
}

/// The job parameters a run started by `kind` gets from what fired it: an alert's details,
/// those the job declares.
pub fn given_parameters(
    settings: &JobSettings,
    state: &TriggerState,
    kind: &str,
) -> serde_json::Map<String, Value> {
    let Some(triggered) = state
        .alert_triggered
        .as_ref()
        .filter(|_| kind == trigger::ALERT)
    else {
        return serde_json::Map::new();
    };
    triggered
        .parameters
        .iter()
        .filter(|(name, _)| settings.parameters.iter().any(|p| &p.name == *name))
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect()
}

/// A job's state after it fired at `now`.
pub fn fired(state: &TriggerState, now: i64) -> TriggerState {
    TriggerState {
        last_fired: now,
        armed_at: state.armed_at,
        updated_tables: BTreeMap::new(),
        model_changed: None,
        files_seen: state.files_seen.clone(),
        files_arrived: None,
        alert_triggered: None,
    }
}

struct Watched {
    job: Job,
    settings: JobSettings,
    state: TriggerState,
    /// When its file arrival directory was last listed.
    files_listed_at: i64,
}

/// Every job with a schedule or a trigger, as the runner's lease holder keeps them.
#[derive(Default)]
pub struct Triggers {
    watched: HashMap<i64, Watched>,
    loaded: bool,
}

impl Triggers {
    /// Reads the event stream, then starts the runs that are due. Loads every job the first
    /// time (and again after losing track, when an event could not be applied).
    pub async fn tick(&mut self, store: &dyn MetaStore, wakeup: &Wakeup, now: i64) -> Result<()> {
        if !self.loaded {
            self.load(store, now).await?;
            self.loaded = true;
        }
        let events = store.pending_events(CONSUMER, EVENT_BATCH).await?;
        let mut changed: Vec<i64> = Vec::new();
        for event in &events {
            match &event.change {
                Change::JobCreated(job) | Change::JobUpdated(job) => {
                    let stored = store.get_job(&event.workspace, job.job_id).await;
                    match stored {
                        Ok(job) => self.watch(job, now),
                        Err(err) if err.hides_object() => {
                            self.watched.remove(&job.job_id);
                        }
                        Err(err) => return Err(err),
                    }
                }
                Change::JobDeleted { job_id, .. } => {
                    self.watched.remove(job_id);
                }
                _ => {
                    for (job_id, watched) in &mut self.watched {
                        if watched.job.workspace == event.workspace
                            && observe(&watched.settings, &mut watched.state, event)
                        {
                            changed.push(*job_id);
                        }
                    }
                }
            }
        }
        for job_id in changed {
            if let Some(watched) = self.watched.get(&job_id) {
                save(store, job_id, &watched.state).await?;
            }
        }
        if let Some(last) = events.last() {
            store.acknowledge_events(CONSUMER, last.id).await?;
        }
        self.list_arrivals(store, now).await?;
        self.fire_due(store, wakeup, now).await
    }

    async fn load(&mut self, store: &dyn MetaStore, now: i64) -> Result<()> {
        let states: HashMap<i64, Value> = store.trigger_states().await?.into_iter().collect();
        self.watched.clear();
        for workspace in store.list_workspaces().await? {
            let mut offset = 0;
            loop {
                let page = store.list_jobs(&workspace, None, offset, 100).await?;
                for job in page.items {
                    let state = states
                        .get(&job.job_id)
                        .and_then(|state| serde_json::from_value(state.clone()).ok());
                    self.watch_with(job, state, now);
                }
                match page.next_offset {
                    Some(next) => offset = next,
                    None => break,
                }
            }
        }
        Ok(())
    }

    fn watch(&mut self, job: Job, now: i64) {
        let state = self
            .watched
            .remove(&job.job_id)
            .map(|watched| watched.state);
        self.watch_with(job, state, now);
    }

    /// Keeps a job whose settings have a schedule or a trigger; its clock triggers are armed
    /// from `now` when it had none before.
    fn watch_with(&mut self, job: Job, state: Option<TriggerState>, now: i64) {
        let Ok(settings) = JobSettings::read(&job.settings) else {
            return;
        };
        if settings.schedule.is_none() && settings.trigger.is_none() {
            self.watched.remove(&job.job_id);
            return;
        }
        let mut state = state.unwrap_or_default();
        if state.armed_at == 0 {
            state.armed_at = now;
        }
        self.watched.insert(
            job.job_id,
            Watched {
                job,
                settings,
                state,
                files_listed_at: 0,
            },
        );
    }

    /// Lists the directories of file arrival triggers that are due a look.
    async fn list_arrivals(&mut self, store: &dyn MetaStore, now: i64) -> Result<()> {
        for (job_id, watched) in &mut self.watched {
            let Some(files) =
                active_trigger(&watched.settings).and_then(|trigger| trigger.file_arrival.as_ref())
            else {
                continue;
            };
            if now - watched.files_listed_at < FILE_POLL {
                continue;
            }
            watched.files_listed_at = now;
            let listed = match watched_directory(&files.url) {
                Ok(directory) => tokio::task::spawn_blocking(move || list_files(&directory))
                    .await
                    .map_err(|err| Error::internal_from("listing files failed", err))?,
                Err(err) => Err(err),
            };
            let listing = match listed {
                Ok(listing) => listing,
                Err(err) => {
                    tracing::warn!(job_id = *job_id, error = %err.report(), "a file arrival trigger cannot list its directory");
                    continue;
                }
            };
            let armed = watched.state.files_seen.is_none();
            let arrived = new_files(&mut watched.state, &listing);
            if arrived.is_empty() && !armed {
                continue;
            }
            save(store, *job_id, &watched.state).await?;
            if arrived.is_empty() {
                continue;
            }
            // Into the event stream, which fires this trigger (and whatever else listens).
            let location = watched_directory(&files.url)?.display().to_string();
            let change = Change::FilesArrived {
                location,
                count: arrived.len(),
                files: arrived.into_iter().take(ARRIVALS_NAMED).collect(),
            };
            let system = tarn_core::registry::Actor {
                id: 0,
                name: "system".into(),
            };
            store
                .record_event(&watched.job.workspace, &system, &change)
                .await?;
        }
        Ok(())
    }

    async fn fire_due(&mut self, store: &dyn MetaStore, wakeup: &Wakeup, now: i64) -> Result<()> {
        for (job_id, watched) in &mut self.watched {
            let Some(kind) = due(&watched.settings, &watched.state, now) else {
                continue;
            };
            let given = given_parameters(&watched.settings, &watched.state, kind);
            // Fired first, then run: a failure to start the run skips this firing rather than
            // repeat it every pass.
            watched.state = fired(&watched.state, now);
            save(store, *job_id, &watched.state).await?;
            match runs::triggered(store, wakeup, &watched.job, kind, given).await {
                Ok(run) => tracing::info!(
                    job_id = *job_id,
                    run_id = run.run_id,
                    trigger = kind,
                    "a trigger started a run"
                ),
                Err(err) => tracing::warn!(
                    job_id = *job_id,
                    error = %err.report(),
                    "a trigger could not start a run"
                ),
            }
        }
        Ok(())
    }
}

async fn save(store: &dyn MetaStore, job_id: i64, state: &TriggerState) -> Result<()> {
    let value = serde_json::to_value(state)
        .map_err(|err| Error::internal_from("cannot encode a trigger's state", err))?;
    store.save_trigger_state(job_id, &value).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(value: Value) -> JobSettings {
        JobSettings::read(&value).expect("settings")
    }

    fn event(change: Change, timestamp: i64) -> Event {
        Event {
            id: 1,
            workspace: "dev".into(),
            timestamp,
            actor: "someone".into(),
            object: String::new(),
            change,
        }
    }

    const MINUTE: i64 = 60_000;
    /// 2026-03-29 00:30 UTC: the night Europe/Amsterdam moves to summer time at 02:00.
    const NIGHT: i64 = 1_774_744_200_000;

    #[test]
    fn a_schedule_fires_at_its_quartz_times_in_its_zone_and_not_when_paused() {
        let job = |pause: &str| {
            settings(
                json!({"schedule": {"quartz_cron_expression": "0 30 2 * * ?",
                "timezone_id": "Europe/Amsterdam", "pause_status": pause}}),
            )
        };
        let state = TriggerState {
            armed_at: NIGHT,
            ..Default::default()
        };
        // 02:30 does not exist that night in Amsterdam: it fires at 03:30 local, 01:30 UTC.
        let next = next_fire(&job("UNPAUSED"), &state).expect("fires");
        assert_eq!(next, NIGHT + 60 * MINUTE);
        assert_eq!(due(&job("UNPAUSED"), &state, next - 1), None);
        assert_eq!(due(&job("UNPAUSED"), &state, next), Some(trigger::PERIODIC));
        let after = fired(&state, next);
        let following = next_fire(&job("UNPAUSED"), &after).expect("again");
        assert_eq!(
            following,
            next + 24 * 60 * MINUTE - 60 * MINUTE,
            "02:30 CEST is 00:30 UTC"
        );
        assert_eq!(next_fire(&job("PAUSED"), &state), None);
        assert_eq!(due(&job("PAUSED"), &state, NIGHT + 10_000 * MINUTE), None);
    }

    #[test]
    fn a_periodic_trigger_counts_from_its_last_fire() {
        let job = settings(json!({"trigger": {"periodic": {"interval": 2, "unit": "HOURS"}}}));
        let state = TriggerState {
            armed_at: NIGHT,
            ..Default::default()
        };
        assert_eq!(next_fire(&job, &state), Some(NIGHT + 120 * MINUTE));
        let state = fired(&state, NIGHT + 125 * MINUTE);
        assert_eq!(next_fire(&job, &state), Some(NIGHT + 245 * MINUTE));
    }

    #[test]
    fn table_updates_wait_for_quiet_and_for_every_table_when_asked() {
        let job = |condition: &str| {
            settings(json!({"trigger": {"table_update": {
                "table_names": ["dev.silver.events", "dev.silver.users"], "condition": condition,
                "wait_after_last_change_seconds": 60, "min_time_between_triggers_seconds": 600}}}))
        };
        let commit = |table: &str, at: i64| {
            event(
                Change::TableCommitted {
                    full_name: table.into(),
                    version: 3,
                    operation: "WRITE".into(),
                    sources: Vec::new(),
                    outside: true,
                },
                at,
            )
        };
        let any = job("ANY_UPDATED");
        let mut state = TriggerState::default();
        assert!(!observe(&any, &mut state, &commit("dev.gold.other", NIGHT)));
        assert!(observe(
            &any,
            &mut state,
            &commit("DEV.silver.events", NIGHT)
        ));
        assert_eq!(due(&any, &state, NIGHT + MINUTE - 1), None, "not quiet yet");
        assert_eq!(due(&any, &state, NIGHT + MINUTE), Some(trigger::TABLE));
        let state = fired(&state, NIGHT + MINUTE);
        let mut again = state.clone();
        observe(
            &any,
            &mut again,
            &commit("dev.silver.events", NIGHT + 2 * MINUTE),
        );
        assert_eq!(
            due(&any, &again, NIGHT + 5 * MINUTE),
            None,
            "too soon after the last fire"
        );
        assert_eq!(due(&any, &again, NIGHT + 11 * MINUTE), Some(trigger::TABLE));

        let all = job("ALL_UPDATED");
        let mut state = TriggerState::default();
        observe(&all, &mut state, &commit("dev.silver.events", NIGHT));
        assert_eq!(
            due(&all, &state, NIGHT + 10 * MINUTE),
            None,
            "users not updated yet"
        );
        observe(
            &all,
            &mut state,
            &commit("dev.silver.users", NIGHT + MINUTE),
        );
        assert_eq!(due(&all, &state, NIGHT + 2 * MINUTE), Some(trigger::TABLE));
    }

    #[test]
    fn new_files_fire_once_settled_and_files_already_there_never() {
        let job = settings(
            json!({"trigger": {"file_arrival": {"url": "file:///landing/",
            "wait_after_last_change_seconds": 60, "min_time_between_triggers_seconds": 600}}}),
        );
        let file = |path: &str, modified: i64| (path.to_string(), modified);
        let arrived = |at: i64| {
            event(
                Change::FilesArrived {
                    location: "/landing/".into(),
                    count: 1,
                    files: vec!["new.csv".into()],
                },
                at,
            )
        };
        let mut state = TriggerState::default();
        let before = [file("old.csv", NIGHT - MINUTE), file("also-old.csv", NIGHT)];
        assert!(new_files(&mut state, &before).is_empty(), "arming");
        assert!(new_files(&mut state, &before).is_empty());
        // A file written in the same millisecond as the newest seen is still new.
        let same_time = [&before[..], &[file("sub/new.csv", NIGHT)]].concat();
        assert_eq!(new_files(&mut state, &same_time), vec!["sub/new.csv"]);
        assert!(new_files(&mut state, &same_time).is_empty(), "seen");
        let later = [&same_time[..], &[file("newer.csv", NIGHT + 4 * MINUTE)]].concat();
        assert_eq!(new_files(&mut state, &later), vec!["newer.csv"]);

        // The event stream fires the trigger: events about other places do not.
        let elsewhere = event(
            Change::FilesArrived {
                location: "/other".into(),
                count: 1,
                files: vec![],
            },
            NIGHT,
        );
        assert!(!observe(&job, &mut state, &elsewhere));
        assert_eq!(due(&job, &state, NIGHT + 60 * MINUTE), None);
        assert!(observe(&job, &mut state, &arrived(NIGHT + 2 * MINUTE)));
        assert_eq!(
            due(&job, &state, NIGHT + 3 * MINUTE - 1),
            None,
            "not quiet yet"
        );
        assert_eq!(
            due(&job, &state, NIGHT + 3 * MINUTE),
            Some(trigger::FILE_ARRIVAL)
        );
        let mut state = fired(&state, NIGHT + 3 * MINUTE);
        observe(&job, &mut state, &arrived(NIGHT + 5 * MINUTE));
        assert_eq!(
            due(&job, &state, NIGHT + 8 * MINUTE),
            None,
            "too soon after the last fire"
        );
        assert_eq!(
            due(&job, &state, NIGHT + 13 * MINUTE),
            Some(trigger::FILE_ARRIVAL)
        );
        assert!(watched_directory("file:///landing/../etc").is_err());
        assert!(watched_directory("s3://bucket/landing").is_err());
    }

    #[test]
    fn listing_finds_files_at_any_depth_without_following_links() {
        let dir = std::env::temp_dir().join(format!("tarn-arrivals-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b")).expect("in the test");
        std::fs::write(dir.join("top.csv"), "1").expect("in the test");
        std::fs::write(dir.join("a/b/deep.csv"), "2").expect("in the test");
        std::os::unix::fs::symlink("/", dir.join("a/root")).expect("in the test");
        let mut names: Vec<String> = list_files(&dir)
            .expect("in the test")
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        names.sort();
        assert_eq!(names, vec!["a/b/deep.csv", "top.csv"]);
        assert!(
            list_files(&dir.join("not-yet"))
                .expect("in the test")
                .is_empty()
        );
        std::fs::remove_dir_all(&dir).expect("in the test");
    }

    #[test]
    fn model_triggers_follow_their_condition_model_and_aliases() {
        let job = settings(json!({"trigger": {"model": {"condition": "MODEL_ALIAS_SET",
            "securable_name": "churn", "aliases": ["champion"]}}}));
        let alias = |name: &str, alias: &str| {
            event(
                Change::AliasSet {
                    name: name.into(),
                    alias: alias.into(),
                    version: 4,
                },
                NIGHT,
            )
        };
        let mut state = TriggerState::default();
        assert!(!observe(&job, &mut state, &alias("churn", "challenger")));
        assert!(!observe(&job, &mut state, &alias("fraud", "champion")));
        let created = event(
            Change::ModelCreated {
                name: "churn".into(),
                tags: BTreeMap::new(),
                description: String::new(),
            },
            NIGHT,
        );
        assert!(!observe(&job, &mut state, &created), "another condition");
        assert_eq!(due(&job, &state, NIGHT + MINUTE), None);
        assert!(observe(&job, &mut state, &alias("churn", "champion")));
        assert_eq!(due(&job, &state, NIGHT), Some(trigger::MODEL));
        let paused = settings(json!({"trigger": {"pause_status": "PAUSED", "model": {
            "condition": "MODEL_ALIAS_SET", "securable_name": "churn"}}}));
        let mut state = TriggerState::default();
        assert!(!observe(&paused, &mut state, &alias("churn", "champion")));
    }

    #[test]
    fn alert_triggers_fire_on_a_change_into_triggered_after_their_cool_down() {
        let job = settings(json!({
            "trigger": {"alert": {"alert_id": "a1", "min_time_between_triggers_seconds": 3600}},
            "parameters": [{"name": "alert_value", "default": ""}, {"name": "region", "default": "eu"}],
        }));
        let change = |alert: &str, previous: &str, state: &str, at: i64| {
            event(
                Change::AlertStateChanged(tarn_core::events::AlertStateChange {
                    alert_id: alert.into(),
                    display_name: "psi".into(),
                    state: state.into(),
                    previous_state: previous.into(),
                    value: Some("0.31".into()),
                    threshold: Some("0.2".into()),
                    message: None,
                    query_text: "SELECT 1".into(),
                    notify: Vec::new(),
                }),
                at,
            )
        };
        let mut state = TriggerState::default();
        assert!(
            !observe(&job, &mut state, &change("a2", "OK", "TRIGGERED", NIGHT)),
            "another alert"
        );
        assert!(
            !observe(&job, &mut state, &change("a1", "TRIGGERED", "OK", NIGHT)),
            "back to OK"
        );
        assert!(
            !observe(
                &job,
                &mut state,
                &change("a1", "TRIGGERED", "TRIGGERED", NIGHT)
            ),
            "a retrigger is for webhooks"
        );
        assert!(observe(
            &job,
            &mut state,
            &change("a1", "OK", "TRIGGERED", NIGHT)
        ));
        assert_eq!(due(&job, &state, NIGHT), Some(trigger::ALERT));
        let given = given_parameters(&job, &state, trigger::ALERT);
        assert_eq!(
            given,
            serde_json::Map::from_iter([("alert_value".to_string(), json!("0.31"))])
        );
        assert!(given_parameters(&job, &state, trigger::TABLE).is_empty());

        // Fired; flapping back within the cool-down waits for it to pass, then fires once.
        let fired_state = fired(&state, NIGHT);
        let mut state = fired_state;
        assert!(observe(
            &job,
            &mut state,
            &change("a1", "OK", "TRIGGERED", NIGHT + 10 * MINUTE)
        ));
        assert_eq!(due(&job, &state, NIGHT + 30 * MINUTE), None);
        assert_eq!(due(&job, &state, NIGHT + 60 * MINUTE), Some(trigger::ALERT));
    }
}
