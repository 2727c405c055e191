//! What reads the event stream. Every change others react to is written as an event in the
//! same transaction as the change, and waits in each consumer's outbox until that consumer
//! takes it (`WebhookStore::fan_out` for webhooks). Webhook delivery lives here; job triggers
//! and monitor alerts come next, reading the same stream.

pub mod webhooks;
