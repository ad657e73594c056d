//! The listing queries: `GET /v1/grants` and `GET /v1/audit`, each a small builder of
//! optional filters that ends in `list()`.

use reqwest::Method;
use tessera_proto::audit::AuditPage;
use tessera_proto::grants::{GrantKind, GrantPage, GrantStatus, Principal};

use crate::Error;
use crate::app::App;

/// `GET /v1/grants` (`grants:read`): grants of this app, newest first, filtered and paged.
#[derive(Debug, Clone)]
#[must_use = "a query does nothing until `list` is called"]
pub struct GrantQuery {
    app: App,
    provider: Option<String>,
    principal: Option<String>,
    status: Option<GrantStatus>,
    kind: Option<GrantKind>,
    limit: Option<u32>,
    cursor: Option<String>,
}

impl GrantQuery {
    pub(crate) fn new(app: App) -> Self {
        Self {
            app,
            provider: None,
            principal: None,
            status: None,
            kind: None,
            limit: None,
            cursor: None,
        }
    }

    /// Only grants of this provider (`stripe`).
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Only grants of this principal.
    pub fn principal(mut self, principal: &Principal) -> Self {
        self.principal = Some(principal.to_string());
        self
    }

    /// Only grants in this status.
    pub fn status(mut self, status: GrantStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only grants of this kind.
    pub fn kind(mut self, kind: GrantKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// At most this many grants per page (the host caps it).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The page after this cursor ([`GrantPage::next_cursor`] of the previous page).
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Fetches one page.
    pub async fn list(self) -> Result<GrantPage, Error> {
        let query: Vec<(&str, String)> = [
            ("provider", self.provider),
            ("principal", self.principal),
            ("status", self.status.map(|s| s.as_str().to_owned())),
            ("kind", self.kind.map(|k| k.as_str().to_owned())),
            ("limit", self.limit.map(|n| n.to_string())),
            ("cursor", self.cursor),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        let url = self.app.endpoint(&["v1", "grants"], &query);
        self.app.call_json(Method::GET, url, Vec::new()).await
    }
}

/// `GET /v1/audit` (`audit:read`): audit rows, oldest first, filtered and paged by sequence
/// number.
#[derive(Debug, Clone)]
#[must_use = "a query does nothing until `list` is called"]
pub struct AuditQuery {
    app: App,
    grant_id: Option<String>,
    provider: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    after: Option<i64>,
    limit: Option<u32>,
}

impl AuditQuery {
    pub(crate) fn new(app: App) -> Self {
        Self {
            app,
            grant_id: None,
            provider: None,
            action: None,
            outcome: None,
            after: None,
            limit: None,
        }
    }

    /// Only rows about this grant.
    pub fn grant_id(mut self, grant_id: impl Into<String>) -> Self {
        self.grant_id = Some(grant_id.into());
        self
    }

    /// Only rows about this provider.
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Only rows of this action (`proxy.execute`, `tokens.retrieve`, `grant.revoke`, …).
    pub fn action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }

    /// Only rows with this outcome (`ok`, `denied`, `error`).
    pub fn outcome(mut self, outcome: impl Into<String>) -> Self {
        self.outcome = Some(outcome.into());
        self
    }

    /// Only rows after this sequence number ([`AuditPage::next_after`] of the previous
    /// page).
    pub fn after(mut self, seq: i64) -> Self {
        self.after = Some(seq);
        self
    }

    /// At most this many rows (the host caps it).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Fetches one page.
    pub async fn list(self) -> Result<AuditPage, Error> {
        let query: Vec<(&str, String)> = [
            ("grant_id", self.grant_id),
            ("provider", self.provider),
            ("action", self.action),
            ("outcome", self.outcome),
            ("after", self.after.map(|n| n.to_string())),
            ("limit", self.limit.map(|n| n.to_string())),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        let url = self.app.endpoint(&["v1", "audit"], &query);
        self.app.call_json(Method::GET, url, Vec::new()).await
    }
}
