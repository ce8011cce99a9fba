//! Live progress (seed 004's messages) for `GET …/status/{job_id}/ws` and `…/events`:
//! one subscription to the broker's progress fanout per API process (`hub.rs`), and for
//! each watcher a task that sends the job's current state first, then what the hub
//! relays about it, until the job ends (`watch.rs`).

mod hub;
mod message;
mod watch;

pub use hub::LiveHub;
pub use message::LiveMessage;
pub use watch::watch;
