//! Identifier formats the MLflow client expects: 32-hex run ids, `m-<32 hex>` logged-model ids.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch, the unit of every MLflow timestamp.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A UTC date and time of day from milliseconds since the epoch, without a date library:
/// (year, month, day, hour, minute, second, millisecond). Civil-from-days after Howard Hinnant.
pub fn utc_parts(millis: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let seconds = millis.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        millis.rem_euclid(1000),
    )
}

/// Formats 16 random bytes as 32 lowercase hex digits.
pub fn hex32(bytes: [u8; 16]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn logged_model_id(bytes: [u8; 16]) -> String {
    format!("m-{}", hex32(bytes))
}

const ADJECTIVES: &[&str] = &[
    "able", "bold", "brave", "bright", "calm", "clever", "crisp", "dapper", "eager", "fair",
    "gentle", "glad", "grand", "happy", "jolly", "keen", "kind", "lively", "lucky", "merry",
    "nimble", "polite", "proud", "quick", "quiet", "rare", "sharp", "shy", "silent", "smooth",
    "swift", "tidy", "vivid", "warm", "wise", "witty",
];
const NOUNS: &[&str] = &[
    "ant", "bass", "bear", "carp", "colt", "crane", "deer", "doe", "eel", "elk", "finch", "fox",
    "frog", "gnu", "goat", "hare", "hawk", "heron", "ibis", "jay", "koi", "lark", "lynx", "mole",
    "moth", "newt", "otter", "owl", "perch", "pike", "seal", "shrew", "sloth", "stork", "trout",
    "vole", "wren", "yak",
];

/// A run name such as `swift-otter-417` for runs created without one, as MLflow does.
pub fn random_run_name(random: u64) -> String {
    let adjective = ADJECTIVES[(random % ADJECTIVES.len() as u64) as usize];
    let noun = NOUNS[((random / 64) % NOUNS.len() as u64) as usize];
    format!("{adjective}-{noun}-{}", (random / 4096) % 1000)
}
