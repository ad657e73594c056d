//! The hosted connect pages: the consent page an end user sees before being sent to the
//! provider, the page at the end of a flow (or the redirect to the app's `return_url`), and
//! the page for a link or answer that is no longer valid.
//!
//! Pages are small server-rendered HTML with every dynamic value escaped, served with a
//! strict Content-Security-Policy (no framing, scripts only with the per-response nonce),
//! `Referrer-Policy: no-referrer` (the link token is in the path) and `Cache-Control:
//! no-store`.
//!
//! Must never: put a token, code, `state` or link token into a page other than the form's
//! own action, or post a grant id to a window whose origin is unknown.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use rand::RngCore as _;
use tessera_proto::connect::ConnectStatus;

use super::connect::{Consent, Finished};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;\
background:#f5f6f8;color:#1d2330}main{max-width:28rem;margin:3rem auto;background:#fff;\
border-radius:12px;padding:2rem;box-shadow:0 1px 4px #0002}h1{font-size:1.35rem;margin:0 0 1rem}\
ul{padding-left:1.2rem}li{margin:.3rem 0}code{font-size:.85em;color:#555}\
.who{color:#444;font-size:.95rem}.actions{display:flex;gap:.75rem;margin-top:1.5rem}\
button{font:inherit;padding:.6rem 1.2rem;border-radius:8px;border:1px solid #888;background:#fff;\
cursor:pointer}button.primary{background:#1f5fd6;border-color:#1f5fd6;color:#fff}\
button:focus-visible{outline:3px solid #f5a623;outline-offset:2px}.muted{color:#666;font-size:.9rem}\
img.logo{width:40px;height:40px;float:right}";

fn nonce() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    STANDARD_NO_PAD.encode(bytes)
}

fn page(status: StatusCode, title: &str, body: &str, script: Option<&str>) -> Response {
    let nonce = nonce();
    let script = script
        .map(|s| format!("<script nonce=\"{nonce}\">{s}</script>"))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>{body}</main>{script}</body></html>",
        escape(title)
    );
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; script-src 'nonce-{nonce}'; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The consent page for the link `link` (the form posts back to the same path).
pub fn consent(c: &Consent, popup: bool) -> Response {
    let title = format!("Connect {} to {}", c.app_name, c.provider_name);
    if c.status != ConnectStatus::Pending && c.status != ConnectStatus::Authorizing {
        let why = match c.status {
            ConnectStatus::Expired => "This link has expired. Go back to the app and start again.",
            _ => "This link has already been used. Go back to the app to see the result.",
        };
        return gone(why);
    }
    let logo = c
        .logo_url
        .as_deref()
        .filter(|u| u.starts_with("https://"))
        .map(|u| format!("<img class=\"logo\" alt=\"\" src=\"{}\">", escape(u)))
        .unwrap_or_default();
    let scopes = if c.scopes.is_empty() {
        "<p>It asks for no specific permissions beyond knowing which account you use.</p>"
            .to_owned()
    } else {
        let items: String = c
            .scopes
            .iter()
            .map(|(label, name)| {
                if label == name {
                    format!("<li><code>{}</code></li>", escape(name))
                } else {
                    format!("<li>{} <code>{}</code></li>", escape(label), escape(name))
                }
            })
            .collect();
        format!("<p>It will be able to:</p><ul>{items}</ul>")
    };
    let delegation = match &c.agent_name {
        Some(agent) => format!(
            "<p class=\"agent\">The agent <strong>{}</strong> of {} will also be able to use this \
             connection on your behalf{}. You can withdraw the agent's access on its own, \
             without disconnecting the account.</p>",
            escape(agent),
            escape(&c.app_name),
            c.delegation_ttl_secs
                .map(|t| format!(" for {}", escape(&duration_words(t))))
                .unwrap_or_default()
        ),
        None => String::new(),
    };
    let popup_field = if popup {
        "<input type=\"hidden\" name=\"popup\" value=\"1\">"
    } else {
        ""
    };
    let body = format!(
        "{logo}<h1>{app} wants to use your {provider} account</h1>\
         <p><strong>{app}</strong> is asking to act on your behalf at <strong>{provider}</strong>. \
         You will sign in at {provider} and can review the request there.</p>{scopes}{delegation}\
         <p class=\"who\">The connection will belong to <code>{principal}</code>. You can revoke it at any time.</p>\
         <form method=\"post\">{popup_field}<div class=\"actions\">\
         <button class=\"primary\" type=\"submit\" name=\"decision\" value=\"allow\" autofocus>Continue to {provider}</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Cancel</button></div></form>\
         <p class=\"muted\">This link works until {expires} (UTC).</p>",
        app = escape(&c.app_name),
        provider = escape(&c.provider_name),
        principal = escape(&c.principal),
        expires = escape(&c.expires_at.to_rfc3339()),
    );
    page(StatusCode::OK, &title, &body, None)
}

/// A duration for people: "3 days", "2 hours", "45 minutes", "30 seconds" (the largest whole
/// unit; anything else in seconds).
fn duration_words(secs: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => plural(s / 86_400, "day"),
        s if s >= 3600 && s % 3600 == 0 => plural(s / 3600, "hour"),
        s if s >= 60 && s % 60 == 0 => plural(s / 60, "minute"),
        s => plural(s, "second"),
    }
}

/// A link or provider answer that cannot be used (unknown, used, expired).
pub fn gone(why: &str) -> Response {
    let body = format!(
        "<h1>This connection cannot continue</h1><p>{}</p>",
        escape(why)
    );
    page(
        StatusCode::BAD_REQUEST,
        "Connection not possible",
        &body,
        None,
    )
}

/// A failure of the host itself (database, vault).
pub fn internal() -> Response {
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "<h1>Something went wrong</h1><p>The connection could not be finished because of a problem on our side. Try again from the app in a few minutes.</p>",
        None,
    )
}

/// The end of a flow: to the app's `return_url` (with `session_id`, `status` and, on
/// failure, `error`), to the opener of a popup, or a page of its own.
pub fn finished(f: &Finished) -> Response {
    let status = f.status.as_str();
    let code = f.error.as_ref().map(|e| e.code.as_str());
    if f.popup {
        // Only the session id, status and error code are posted: they reveal nothing, so
        // any opener may receive them; the app reads the grant id with its signed API.
        let message = serde_json::json!({
            "type": "tessera.connect",
            "session_id": f.session_id,
            "status": status,
            "error": code,
        });
        let message = message.to_string().replace('<', "\\u003c");
        let script = format!(
            "(function(){{var m={message};if(window.opener){{window.opener.postMessage(m,'*');window.close();}}}})();"
        );
        return page(
            StatusCode::OK,
            "Connection finished",
            &result_body(f),
            Some(&script),
        );
    }
    if let Some(url) = &f.return_url
        && let Ok(mut target) = url::Url::parse(url)
    {
        {
            let mut q = target.query_pairs_mut();
            q.append_pair("session_id", &f.session_id);
            q.append_pair("status", status);
            if let Some(code) = code {
                q.append_pair("error", code);
            }
        }
        let mut response = Redirect::to(target.as_str()).into_response();
        response.headers_mut().insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        return response;
    }
    page(StatusCode::OK, "Connection finished", &result_body(f), None)
}

fn result_body(f: &Finished) -> String {
    match &f.error {
        None => format!(
            "<h1>Connected</h1><p>Your {} account is connected. You can close this window and go back to the app.</p>",
            escape(&f.provider_name)
        ),
        Some(e) => format!(
            "<h1>Not connected</h1><p>{}</p><p class=\"muted\">Code: <code>{}</code>. Go back to the app to try again.</p>",
            escape(&e.message),
            escape(&e.code)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::finished as finished_page;
    use super::*;

    use tessera_proto::connect::ConnectError;

    use crate::store::Timestamp;

    async fn body(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn finished(popup: bool, return_url: Option<&str>, error: bool) -> Finished {
        Finished {
            session_id: "0190aa00-0000-7000-8000-000000000001".into(),
            status: if error {
                ConnectStatus::Failed
            } else {
                ConnectStatus::Completed
            },
            error: error.then(|| ConnectError {
                code: "access_denied".into(),
                message: "you declined </script><b>".into(),
            }),
            return_url: return_url.map(str::to_owned),
            popup,
            provider_name: "GitHub".into(),
        }
    }

    #[tokio::test]
    async fn the_consent_page_escapes_what_it_shows_and_cannot_be_framed() {
        let c = Consent {
            app_name: "<img src=x onerror=alert(1)>".into(),
            provider_name: "GitHub".into(),
            logo_url: Some("javascript:alert(1)".into()),
            scopes: vec![("Read your repositories".into(), "repo".into())],
            principal: "user:https://idp.example.com:ada".into(),
            agent_name: Some("<b>mail-bot</b>".into()),
            delegation_ttl_secs: Some(7 * 86_400),
            status: ConnectStatus::Pending,
            expires_at: Timestamp::from_unix_millis(1_700_000_000_000),
        };
        let r = consent(&c, true);
        assert_eq!(r.status(), StatusCode::OK);
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'nonce-"));
        assert_eq!(r.headers()[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        let html = body(r).await;
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!html.contains("javascript:"), "only https logos are shown");
        assert!(html.contains("Read your repositories") && html.contains("<code>repo</code>"));
        assert!(
            html.contains("The agent <strong>&lt;b&gt;mail-bot&lt;/b&gt;</strong>")
                && html.contains("for 7 days"),
            "the consent page names the agent and how long: {html}"
        );
        assert!(
            html.contains("name=\"popup\" value=\"1\""),
            "popup mode is kept"
        );

        let expired = Consent {
            status: ConnectStatus::Expired,
            ..c
        };
        let r = consent(&expired, false);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(body(r).await.contains("expired"));
    }

    #[tokio::test]
    async fn a_popup_posts_only_the_session_status_and_error_code_to_its_opener() {
        let r = finished_page(&finished(true, Some("https://app.example.com/x"), true));
        assert_eq!(r.status(), StatusCode::OK, "a popup never redirects");
        let html = body(r).await;
        assert!(html.contains("postMessage"));
        assert!(html.contains("\"type\":\"tessera.connect\""));
        assert!(html.contains("\"error\":\"access_denied\""));
        assert!(!html.contains("grant"), "no grant id is posted: {html}");
        // The message in the page is escaped, the script carries the CSP nonce.
        assert!(!html.contains("</script><b>"), "{html}");
        assert!(html.contains("<script nonce=\""));
    }

    #[tokio::test]
    async fn the_end_redirects_to_the_return_url_with_the_result() {
        let r = finished_page(&finished(
            false,
            Some("https://app.example.com/back?x=1"),
            false,
        ));
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let to = r.headers()[header::LOCATION].to_str().unwrap();
        assert_eq!(
            to,
            "https://app.example.com/back?x=1&session_id=0190aa00-0000-7000-8000-000000000001&status=completed"
        );
        let r = finished_page(&finished(false, None, false));
        assert_eq!(r.status(), StatusCode::OK);
        assert!(body(r).await.contains("Your GitHub account is connected"));
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\" title='y'>&</a>"),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
