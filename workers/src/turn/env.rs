//! What every turn of a worker shares, built once when the worker starts. It has a module of its
//! own so that each phase of a turn can take it without depending on the module that runs the
//! phases.

use std::time::Duration;

use deadpool_postgres::Pool;

use crate::config::ToolLimits;
use crate::inflight::InFlight;
use crate::model::Models;
use crate::tools::ToolRunner;

/// What the worker shares between its turns.
pub struct TurnEnv {
    pub worker_id: String,
    pub pool: Pool,
    pub models: Models,
    pub inflight: InFlight,
    pub coalesce: Duration,
    /// Context window assumed for models confab does not know.
    pub default_context_window: u32,
    /// The windows of the assistants' models, as last seen (for reading recent turns).
    pub windows: crate::store::windows::ContextWindows,
    /// Last attempt the broker allows before dead-lettering (delivery limit + 1).
    pub final_attempt: u32,
    /// How long a streamed turn outlives a caller that left, for it to reconnect.
    pub resume_grace: Duration,
    /// The stream queue every streamed turn's events are also logged to; none when streams
    /// are not resumable (`CONFAB_RESUME_RETENTION_SECS=0`).
    pub reply_log: Option<String>,
    /// Calls assistants' server-side tools.
    pub tools: ToolRunner,
    pub tool_limits: ToolLimits,
}
