//! An agent's memory policy: how much of a stored conversation goes upstream
//! with each new message (DESIGN.md, "Stateful conversations").
//!
//! `memory = { max_messages = 20, max_input_tokens = 4000, strategy = "truncate" }`
//! on a config agent or a workspace agent. A conversation keeps every turn
//! (until its retention); what the policy bounds is what the model *sees*:
//!
//! - **`truncate`** (the default) drops the oldest messages until at most
//!   `max_messages` remain and their estimated tokens fit `max_input_tokens`.
//! - **`summarize`** does the same, but the dropped messages are first folded
//!   into a summary made by the agent's own model (a billed call with its own
//!   usage record); the summary goes upstream as a system message ahead of
//!   the kept ones and is stored with the conversation, so the next turn
//!   folds only what it newly drops.
//!
//! The newest message is always kept, even alone over the token budget: a
//! history over the budget is trimmed, never refused (the upstream answers
//! for a single message that is too long for it). The rules here are pure
//! functions over `(role, token estimate)` pairs, so every front door —
//! sessions, `/v1/chat`, Responses chains — trims the same way.

use serde::{Deserialize, Serialize};

/// What an agent's conversations keep in view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryPolicy {
    /// At most this many messages of history go upstream (the new one included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages: Option<u32>,
    /// At most this many estimated input tokens of history (bytes / 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_input_tokens: Option<u64>,
    #[serde(default)]
    pub strategy: Strategy,
}

/// What happens to the messages a [`MemoryPolicy`] drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// They are left out.
    #[default]
    Truncate,
    /// They are folded into a summary by the agent's model.
    Summarize,
}

/// Why a memory policy is refused (config or the agents API; the caller
/// names the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("max_messages must be at least 1")]
    NoMessages,
    #[error("max_input_tokens must be at least 1")]
    NoTokens,
}

impl MemoryPolicy {
    /// Checks the bounds a policy may take; names the failing field.
    pub fn validate(&self) -> Result<(), (&'static str, PolicyError)> {
        if self.max_messages == Some(0) {
            return Err(("max_messages", PolicyError::NoMessages));
        }
        if self.max_input_tokens == Some(0) {
            return Err(("max_input_tokens", PolicyError::NoTokens));
        }
        Ok(())
    }

    /// The same policy with `max_messages` no larger than `ceiling` (the
    /// store's `responses.max_history_items`): what the store can hand back.
    pub fn within(self, ceiling: usize) -> MemoryPolicy {
        let ceiling = u32::try_from(ceiling).unwrap_or(u32::MAX).max(1);
        MemoryPolicy { max_messages: Some(self.max_messages.map_or(ceiling, |m| m.min(ceiling))), ..self }
    }
}

/// Estimated tokens of a message's text: bytes / 4, rounded up, as the
/// rewrite estimates a prompt, plus a few for the role and framing.
pub fn estimate_tokens(text_bytes: usize) -> u64 {
    (text_bytes as u64).div_ceil(4) + 4
}

/// Where the kept messages start: `messages[keep_from..]` go upstream and
/// `messages[..keep_from]` are dropped (or folded into a summary).
///
/// `tokens[i]` is the estimate of message `i`, oldest first; `reserved` is
/// what is already spent on text that always goes (a summary). The newest
/// message is always kept. A kept history never starts with an assistant's
/// tool result or a tool message cut from the call that asked for it: the
/// cut moves forward past `tool` messages.
pub fn keep_from(policy: &MemoryPolicy, tokens: &[u64], is_tool: &dyn Fn(usize) -> bool, reserved: u64) -> usize {
    let n = tokens.len();
    if n == 0 {
        return 0;
    }
    let max_messages = policy.max_messages.map_or(n, |m| m as usize).max(1);
    let mut from = n.saturating_sub(max_messages);
    if let Some(budget) = policy.max_input_tokens {
        let mut spent = reserved;
        let mut start = n;
        while start > from {
            let next = spent + tokens[start - 1];
            if next > budget && start < n {
                break;
            }
            spent = next;
            start -= 1;
        }
        from = start;
    }
    while from < n - 1 && is_tool(from) {
        from += 1;
    }
    from
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_messages: Option<u32>, max_input_tokens: Option<u64>) -> MemoryPolicy {
        MemoryPolicy { max_messages, max_input_tokens, strategy: Strategy::Truncate }
    }

    const NO_TOOLS: &dyn Fn(usize) -> bool = &|_| false;

    #[test]
    fn no_bounds_keep_everything() {
        assert_eq!(keep_from(&MemoryPolicy::default(), &[10, 10, 10], NO_TOOLS, 0), 0);
        assert_eq!(keep_from(&MemoryPolicy::default(), &[], NO_TOOLS, 0), 0);
    }

    #[test]
    fn max_messages_keeps_the_newest() {
        assert_eq!(keep_from(&policy(Some(2), None), &[1, 1, 1, 1, 1], NO_TOOLS, 0), 3);
        assert_eq!(keep_from(&policy(Some(9), None), &[1, 1], NO_TOOLS, 0), 0);
    }

    #[test]
    fn the_token_budget_drops_the_oldest_but_never_the_newest() {
        assert_eq!(keep_from(&policy(None, Some(25)), &[10, 10, 10, 10], NO_TOOLS, 0), 2);
        assert_eq!(keep_from(&policy(None, Some(5)), &[10, 10, 100], NO_TOOLS, 0), 2, "newest alone over budget");
        assert_eq!(keep_from(&policy(None, Some(25)), &[10, 10, 10], NO_TOOLS, 10), 2, "a summary takes its share");
        assert_eq!(keep_from(&policy(Some(1), Some(1000)), &[1, 1, 1], NO_TOOLS, 0), 2, "both bounds apply");
    }

    #[test]
    fn a_kept_history_does_not_start_with_an_orphaned_tool_message() {
        let tools = |i: usize| i == 2 || i == 3;
        assert_eq!(keep_from(&policy(Some(3), None), &[1, 1, 1, 1, 1], &tools, 0), 4);
        assert_eq!(keep_from(&policy(Some(1), None), &[1, 1, 1, 1], &tools, 0), 3, "the newest stays even so");
    }

    #[test]
    fn policies_parse_and_validate() {
        let p: MemoryPolicy = serde_json::from_str(r#"{"max_messages":4,"strategy":"summarize"}"#).unwrap();
        assert_eq!(p, MemoryPolicy { max_messages: Some(4), max_input_tokens: None, strategy: Strategy::Summarize });
        assert!(serde_json::from_str::<MemoryPolicy>(r#"{"strategy":"forget"}"#).is_err());
        assert!(serde_json::from_str::<MemoryPolicy>(r#"{"max_mesages":4}"#).is_err());
        assert_eq!(policy(Some(0), None).validate().unwrap_err().0, "max_messages");
        assert_eq!(policy(None, Some(0)).validate().unwrap_err().0, "max_input_tokens");
        assert_eq!(policy(None, None).within(50).max_messages, Some(50));
        assert_eq!(policy(Some(10), None).within(50).max_messages, Some(10));
    }
}
