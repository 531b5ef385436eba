//! One turn's server-side tool loop, the side of it outside the model: each round of calls the
//! model makes is recorded before any call is sent, the calls run at once (in parallel), and
//! each result is recorded as it returns. A redelivered job finds its rounds stored: it answers
//! the calls an earlier attempt recorded but did not finish, and never sends a call twice that
//! returned (`store/steps.rs`). Nothing of an ephemeral turn is recorded.

use std::time::Duration;

use confab_contract::{ClientTools, Role, ToolCall, now_ms};
use confab_shared::db::DbError;
use futures_util::future::try_join_all;
use tracing::info;

use super::env::TurnEnv;
use super::retry;
use crate::context::Turn;
use crate::model::ChatMessage;
use crate::store::steps::StepLog;
use crate::tools::{CallContext, Function, Toolbox, error_result};

/// The assistant's tools for one turn, and the rounds taken so far.
pub(super) struct ToolSteps<'a> {
    env: &'a TurnEnv,
    toolbox: Toolbox,
    context: CallContext,
    /// Where rounds are recorded; none for an ephemeral turn.
    log: Option<StepLog>,
    taken: u32,
    deadline_ms: i64,
}

impl<'a> ToolSteps<'a> {
    /// `earlier` is what an earlier attempt of the turn recorded (`Parts::steps`).
    pub fn new(
        env: &'a TurnEnv,
        toolbox: Toolbox,
        context: CallContext,
        log: Option<StepLog>,
        earlier: &[Turn],
        deadline_ms: i64,
    ) -> Self {
        let taken = earlier
            .iter()
            .filter(|step| step.role == Role::Assistant)
            .count() as u32;
        Self {
            env,
            toolbox,
            context,
            log,
            taken,
            deadline_ms,
        }
    }

    /// What the model is offered: the caller's functions, and the assistant's while rounds
    /// remain (after the last one, the model must answer).
    pub fn offered(&self, client: &ClientTools) -> ClientTools {
        let mut offered = client.clone();
        if self.taken < self.env.tool_limits.max_steps {
            offered
                .definitions
                .extend(self.toolbox.functions().iter().map(Function::definition));
        }
        offered
    }

    /// Whether the call is to one of the assistant's tools (the others are the caller's).
    pub fn owns(&self, call: &ToolCall) -> bool {
        self.toolbox.get(&call.name).is_some()
    }

    /// Record a round of calls, run them and record their results: the messages that carry
    /// the round on in the model's context.
    pub async fn round(&mut self, calls: Vec<ToolCall>) -> Result<Vec<ChatMessage>, DbError> {
        if let Some(log) = &self.log {
            let step = self.taken;
            retry::until_deadline(self.deadline_ms, || {
                log.record_calls(&self.env.pool, step, &calls)
            })
            .await?;
        }
        self.taken += 1;
        info!(
            step = self.taken,
            calls = calls.len(),
            "calling the assistant's tools"
        );
        let results = self.answer(&calls).await?;
        let mut messages = vec![ChatMessage {
            role: Role::Assistant,
            content: String::new(),
            tool_calls: calls,
            tool_call_id: None,
        }];
        messages.extend(results);
        Ok(messages)
    }

    /// Run `calls` at once and record each result as it returns.
    pub async fn answer(&self, calls: &[ToolCall]) -> Result<Vec<ChatMessage>, DbError> {
        try_join_all(calls.iter().map(|call| self.answer_one(call))).await
    }

    async fn answer_one(&self, call: &ToolCall) -> Result<ChatMessage, DbError> {
        let within = Duration::from_millis((self.deadline_ms - now_ms()).max(0) as u64);
        let content = match self.toolbox.get(&call.name) {
            Some(function) => {
                self.env
                    .tools
                    .run(&self.context, function, call, within)
                    .await
            }
            None => error_result(format!("there is no tool named {:?}", call.name)),
        };
        if let Some(log) = &self.log {
            retry::until_deadline(self.deadline_ms, || {
                log.record_result(&self.env.pool, &call.id, &content)
            })
            .await?;
        }
        Ok(ChatMessage {
            role: Role::Tool,
            content,
            tool_calls: Vec::new(),
            tool_call_id: Some(call.id.clone()),
        })
    }
}

/// The calls of the last recorded round that have no recorded result: an earlier attempt
/// stopped while they ran.
pub(super) fn unanswered(earlier: &[Turn]) -> Vec<ToolCall> {
    let Some(at) = earlier
        .iter()
        .rposition(|step| step.role == Role::Assistant)
    else {
        return Vec::new();
    };
    let answered: Vec<&str> = earlier[at..]
        .iter()
        .filter_map(|step| step.tool_call_id.as_deref())
        .collect();
    earlier[at]
        .tool_calls
        .iter()
        .filter(|call| !answered.contains(&call.id.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "f".into(),
            arguments: "{}".into(),
        }
    }

    fn step(role: Role, calls: Vec<ToolCall>, answers: Option<&str>) -> Turn {
        Turn {
            pk: 0,
            role,
            content: String::new(),
            tool_calls: calls,
            tool_call_id: answers.map(str::to_owned),
        }
    }

    #[test]
    fn only_the_last_rounds_calls_without_a_result_are_unanswered() {
        let earlier = [
            step(Role::Assistant, vec![call("a")], None),
            step(Role::Tool, Vec::new(), Some("a")),
            step(Role::Assistant, vec![call("b"), call("c")], None),
            step(Role::Tool, Vec::new(), Some("c")),
        ];
        assert_eq!(unanswered(&earlier), [call("b")]);
        assert!(unanswered(&earlier[..2]).is_empty());
        assert!(unanswered(&[]).is_empty());
    }
}
