//! The wallet API (`/wallet/api/…`) from the browser: same-origin requests carry the
//! session cookie; every change carries the session's CSRF token. Errors come back as the
//! host's problem documents, turned into one line a person can act on.

use gloo_net::http::{Request, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use tessera_proto::approvals::{Approval, ApprovalPage};
use tessera_proto::audit::AuditPage;
use tessera_proto::problem::Problem;
use tessera_proto::wallet::{
    CSRF_HEADER, WalletGrantPage, WalletReconnect, WalletSession, WalletTtlRequest,
};

/// Why a request failed, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Not signed in (or the session ended).
    SignedOut,
    /// The host refused or failed: its words, with the stable code.
    Host { code: String, detail: String },
    /// The request did not get through.
    Network(String),
}

impl ApiError {
    /// One line for the page.
    pub fn message(&self) -> String {
        match self {
            Self::SignedOut => "Your session has ended. Sign in again.".to_owned(),
            Self::Host { detail, code } => format!("{detail} ({code})"),
            Self::Network(e) => format!("Tessera could not be reached: {e}. Try again."),
        }
    }
}

async fn read<T: DeserializeOwned>(r: Response) -> Result<T, ApiError> {
    if r.status() == 401 {
        return Err(ApiError::SignedOut);
    }
    if !r.ok() {
        let status = r.status();
        return Err(match r.json::<Problem>().await {
            Ok(p) => ApiError::Host {
                code: p.code,
                detail: p.detail,
            },
            Err(_) => ApiError::Host {
                code: status.to_string(),
                detail: "the host answered with an error".to_owned(),
            },
        });
    }
    r.json::<T>()
        .await
        .map_err(|e| ApiError::Network(e.to_string()))
}

async fn send(b: RequestBuilder) -> Result<Response, ApiError> {
    b.send().await.map_err(|e| ApiError::Network(e.to_string()))
}

async fn send_req(r: Request) -> Result<Response, ApiError> {
    r.send().await.map_err(|e| ApiError::Network(e.to_string()))
}

/// The session, or `SignedOut`.
pub async fn session() -> Result<WalletSession, ApiError> {
    read(send(Request::get("/wallet/api/session")).await?).await
}

/// The user's grants.
pub async fn grants() -> Result<WalletGrantPage, ApiError> {
    read(send(Request::get("/wallet/api/grants")).await?).await
}

/// A page of a grant's activity, newest first: `query` holds the filters and the cursor
/// (`&since=…&until=…&before=…`), already encoded.
pub async fn activity(grant_id: &str, query: &str) -> Result<AuditPage, ApiError> {
    read(
        send(Request::get(&format!(
            "/wallet/api/grants/{grant_id}/activity?limit=50{query}"
        )))
        .await?,
    )
    .await
}

/// Sets a delegation's TTL.
pub async fn extend_delegation(
    csrf: &str,
    id: &str,
    ttl_secs: u64,
) -> Result<serde_json::Value, ApiError> {
    let req = Request::put(&format!("/wallet/api/delegations/{id}/ttl"))
        .header(CSRF_HEADER, csrf)
        .json(&WalletTtlRequest { ttl_secs })
        .map_err(|e| ApiError::Network(e.to_string()))?;
    read(send_req(req).await?).await
}

/// The user's approvals.
pub async fn approvals() -> Result<ApprovalPage, ApiError> {
    read(send(Request::get("/wallet/api/approvals")).await?).await
}

/// One approval with its request.
pub async fn approval(id: &str) -> Result<Approval, ApiError> {
    read(send(Request::get(&format!("/wallet/api/approvals/{id}"))).await?).await
}

/// Revokes a grant.
pub async fn revoke_grant(csrf: &str, id: &str) -> Result<serde_json::Value, ApiError> {
    read(
        send(Request::delete(&format!("/wallet/api/grants/{id}")).header(CSRF_HEADER, csrf))
            .await?,
    )
    .await
}

/// Ends a delegation.
pub async fn revoke_delegation(csrf: &str, id: &str) -> Result<(), ApiError> {
    let r =
        send(Request::delete(&format!("/wallet/api/delegations/{id}")).header(CSRF_HEADER, csrf))
            .await?;
    if r.ok() {
        Ok(())
    } else {
        read::<serde_json::Value>(r).await.map(|_| ())
    }
}

/// Sets a grant's TTL.
pub async fn extend_grant(
    csrf: &str,
    id: &str,
    ttl_secs: u64,
) -> Result<serde_json::Value, ApiError> {
    let req = Request::put(&format!("/wallet/api/grants/{id}/ttl"))
        .header(CSRF_HEADER, csrf)
        .json(&WalletTtlRequest { ttl_secs })
        .map_err(|e| ApiError::Network(e.to_string()))?;
    read(send_req(req).await?).await
}

/// A link to connect a grant again.
pub async fn reconnect(csrf: &str, id: &str) -> Result<WalletReconnect, ApiError> {
    read(
        send(
            Request::post(&format!("/wallet/api/grants/{id}/reconnect")).header(CSRF_HEADER, csrf),
        )
        .await?,
    )
    .await
}

/// Approves or denies an approval, binding it to the hash shown.
pub async fn decide(
    csrf: &str,
    id: &str,
    approve: bool,
    sha256: &str,
) -> Result<Approval, ApiError> {
    let verb = if approve { "approve" } else { "deny" };
    let body = serde_json::json!({ "request_sha256": sha256 });
    let req = Request::post(&format!("/wallet/api/approvals/{id}/{verb}"))
        .header(CSRF_HEADER, csrf)
        .json(&body)
        .map_err(|e| ApiError::Network(e.to_string()))?;
    read(send_req(req).await?).await
}

/// Signs out.
pub async fn logout(csrf: &str) -> Result<(), ApiError> {
    let r = send(Request::post("/wallet/api/logout").header(CSRF_HEADER, csrf)).await?;
    if r.ok() || r.status() == 401 {
        Ok(())
    } else {
        read::<serde_json::Value>(r).await.map(|_| ())
    }
}
