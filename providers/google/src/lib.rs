//! Google provider: Google APIs (Gmail, Drive, Calendar, ...) for a user, with OAuth 2 and PKCE.
//!
//! Asks for offline access (`access_type=offline`, `prompt=consent`, so a refresh token is
//! issued) and incremental consent (`include_granted_scopes=true`). Users may untick scopes
//! on Google's granular consent screen, so the credential records the scopes the token
//! response says were granted, not the ones requested. Refresh responses carry no new refresh
//! token (Google does not rotate), so the old one is kept; `invalid_grant` means the user
//! revoked access or the token expired. The account label is the `email` from the `OpenID`
//! Connect userinfo endpoint. Signing covers `*.googleapis.com`; revocation posts the refresh
//! token to `oauth2.googleapis.com/revoke`, which ends the whole grant.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use serde_json::Value;
use tessera_provider_sdk::classify::{self, bearer_insufficient_scope, retry_after};
use tessera_provider_sdk::oauth2::{AccountLookup, ClientAuth, Revocation, RevokeToken};
use tessera_provider_sdk::{Classification, HttpResponse, OAuth2, OAuth2Adapter, OAuth2Provider};

/// The Google provider, as data plus its classify quirk.
pub struct Google;

impl OAuth2Provider for Google {
    const SPEC: OAuth2 = OAuth2 {
        id: "google",
        display_name: "Google",
        version: "0.1.0",
        categories: &["productivity", "email", "storage", "calendar"],
        authorize_url: "https://accounts.google.com/o/oauth2/v2/auth",
        token_url: "https://oauth2.googleapis.com/token",
        revocation: Revocation::Rfc7009 {
            url: "https://oauth2.googleapis.com/revoke",
            token: RevokeToken::RefreshElseAccess,
            client_auth: false,
        },
        default_scopes: &["openid", "email", "profile"],
        scope_separator: " ",
        scopes: &[
            ("openid", "Associate you with your personal info on Google"),
            ("email", "See your primary Google Account email address"),
            (
                "profile",
                "See your personal info, including any info you've made public",
            ),
            (
                "https://www.googleapis.com/auth/userinfo.email",
                "See your primary Google Account email address",
            ),
            (
                "https://www.googleapis.com/auth/userinfo.profile",
                "See your personal info",
            ),
            (
                "https://mail.google.com/",
                "Read, compose, send and permanently delete all your Gmail email",
            ),
            (
                "https://www.googleapis.com/auth/gmail.readonly",
                "View your Gmail messages and settings",
            ),
            (
                "https://www.googleapis.com/auth/gmail.send",
                "Send email on your behalf",
            ),
            (
                "https://www.googleapis.com/auth/gmail.compose",
                "Manage drafts and send email",
            ),
            (
                "https://www.googleapis.com/auth/gmail.modify",
                "Read, compose and send email from your Gmail account",
            ),
            (
                "https://www.googleapis.com/auth/gmail.labels",
                "See and edit your Gmail labels",
            ),
            (
                "https://www.googleapis.com/auth/drive",
                "See, edit, create and delete all your Google Drive files",
            ),
            (
                "https://www.googleapis.com/auth/drive.readonly",
                "See and download all your Google Drive files",
            ),
            (
                "https://www.googleapis.com/auth/drive.file",
                "See, edit, create and delete only the Drive files this app uses",
            ),
            (
                "https://www.googleapis.com/auth/drive.metadata.readonly",
                "See information about your Google Drive files",
            ),
            (
                "https://www.googleapis.com/auth/calendar",
                "See, edit, share and delete all your calendars",
            ),
            (
                "https://www.googleapis.com/auth/calendar.readonly",
                "See and download any calendar you can access",
            ),
            (
                "https://www.googleapis.com/auth/calendar.events",
                "View and edit events on all your calendars",
            ),
            (
                "https://www.googleapis.com/auth/calendar.events.readonly",
                "View events on all your calendars",
            ),
            (
                "https://www.googleapis.com/auth/contacts.readonly",
                "See and download your contacts",
            ),
            (
                "https://www.googleapis.com/auth/spreadsheets",
                "See, edit, create and delete your Google Sheets spreadsheets",
            ),
            (
                "https://www.googleapis.com/auth/documents",
                "See, edit, create and delete your Google Docs documents",
            ),
        ],
        pkce: true,
        client_auth: ClientAuth::ClientSecretPost,
        authorize_params: &[
            ("access_type", "offline"),
            ("prompt", "consent"),
            ("include_granted_scopes", "true"),
        ],
        allowed_hosts: &["*.googleapis.com"],
        logo_url: Some("https://www.gstatic.com/images/branding/product/2x/googleg_96dp.png"),
        docs_url: Some("https://developers.google.com/identity/protocols/oauth2/web-server"),
        account: Some(AccountLookup {
            url: "https://openidconnect.googleapis.com/v1/userinfo",
            headers: &[],
            label_pointers: &["/email", "/name", "/sub"],
            metadata: &[("sub", "/sub")],
        }),
        supports_refresh: true,
        ..OAuth2::BASE
    };

    fn classify(response: &HttpResponse, now: u64) -> Classification {
        classify_google(response, now)
    }
}

/// Google's error shapes: `error.errors[].reason` (older APIs: `insufficientPermissions`,
/// `rateLimitExceeded`, `userRateLimitExceeded`) and `error.details[].reason` (newer APIs:
/// `ACCESS_TOKEN_SCOPE_INSUFFICIENT`, `RATE_LIMIT_EXCEEDED`).
fn reasons(body: &[u8]) -> Vec<String> {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let error = &json["error"];
    ["errors", "details"]
        .iter()
        .filter_map(|key| error.get(*key).and_then(Value::as_array))
        .flatten()
        .filter_map(|item| item.get("reason").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

fn classify_google(response: &HttpResponse, now: u64) -> Classification {
    if response.status == 403 {
        let reasons = reasons(&response.body);
        let has = |r: &str| reasons.iter().any(|x| x == r);
        if has("insufficientPermissions") || has("ACCESS_TOKEN_SCOPE_INSUFFICIENT") {
            let scopes = bearer_insufficient_scope(&response.headers).unwrap_or_default();
            return Classification::InsufficientScope(scopes);
        }
        if has("rateLimitExceeded") || has("userRateLimitExceeded") || has("RATE_LIMIT_EXCEEDED") {
            return Classification::RateLimited(retry_after(&response.headers, now));
        }
    }
    classify::standard(response, now)
}

tessera_provider_sdk::export_provider!(OAuth2Adapter<Google>);

#[cfg(test)]
mod tests;
