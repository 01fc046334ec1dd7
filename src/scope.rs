//! What a key may do, and what each route asks of it.
//!
//! A leaf module: the config (static keys), the stores (key records), auth
//! (principals) and the routes table all speak these types, so they live
//! below every one of them.

use serde::{Deserialize, Serialize};

/// The workspace that holds the admin keys (created at first start).
pub const ADMIN_WORKSPACE: &str = "admin";

/// What a key may do (DESIGN.md, "Keys, scopes, workspaces").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The model API and sessions.
    Chat,
    /// Its workspace's webhooks and events.
    Webhook,
    /// Everything inside its workspace.
    Full,
    /// Across workspaces: workspaces, plans, top-ups.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Chat => "chat",
            Scope::Webhook => "webhook",
            Scope::Full => "full",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "chat" => Some(Scope::Chat),
            "webhook" => Some(Scope::Webhook),
            "full" => Some(Scope::Full),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}
