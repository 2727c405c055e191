//! Identifier formats the MLflow client expects: 32-hex run ids, `m-<32 hex>` logged-model ids.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch, the unit of every MLflow timestamp.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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
