//! The two call modes. Retrieve (`App::request`): the host answers `POST /v1/retrieve` with
//! the auth material for exactly the described request, and the SDK sends that request to
//! the provider itself. Proxy (`App::proxy_request`): the host sends it (`POST /v1/proxy`)
//! and streams back the provider's answer, marked with `tessera-upstream`.
//!
//! Must never: put auth material the host returned (header values, a URL with a credential
//! in its query) into an error or `Debug` output, or send a provider request other than the
//! one described to the host.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tessera_proto::calls::{
    CallNote, GrantSelector, ProxyRequest, REQUEST_ID_HEADER, RetrieveRequest, RetrieveResponse,
    UPSTREAM_HEADER,
};
use tessera_proto::signing;

use crate::Error;
use crate::app::{App, read_host_error};

/// Marker for a retrieve-mode [`CallBuilder`] ([`App::request`]).
#[derive(Debug, Clone, Copy)]
pub struct Retrieve;

/// Marker for a proxy-mode [`CallBuilder`] ([`App::proxy_request`]).
#[derive(Debug, Clone, Copy)]
pub struct Proxy;

/// A retrieve-mode call being described ([`App::request`]).
pub type RetrieveBuilder = CallBuilder<Retrieve>;

/// A proxy-mode call being described ([`App::proxy_request`]).
pub type ProxyBuilder = CallBuilder<Proxy>;

/// A provider request being described: which grant, why, and the HTTP request itself.
/// Finish it with `send` (either mode) or `authorize` (retrieve mode).
#[must_use = "a call does nothing until it is sent"]
pub struct CallBuilder<M> {
    app: App,
    method: Method,
    url: String,
    grant: GrantSelector,
    note: CallNote,
    headers: Vec<(String, String)>,
    body: Option<Bytes>,
    /// The first invalid input given to a setter, reported by `send`.
    error: Option<Error>,
    /// Proxy mode: how long `send` waits for a person when the call is held for approval.
    wait_for_approval: Option<std::time::Duration>,
    mode: PhantomData<M>,
}

impl<M> CallBuilder<M> {
    pub(crate) fn new(app: App, method: Method, url: String) -> Self {
        Self {
            app,
            method,
            url,
            grant: GrantSelector::default(),
            note: CallNote::default(),
            headers: Vec::new(),
            body: None,
            error: None,
            wait_for_approval: None,
            mode: PhantomData,
        }
    }

    /// Uses the grant with this id.
    pub fn grant_id(mut self, grant_id: impl Into<String>) -> Self {
        self.grant.grant_id = Some(grant_id.into());
        self
    }

    /// Makes the call on behalf of the end user this JWT (from the app's identity provider)
    /// names: the host verifies it and uses their grant, or their group's, for the provider.
    /// Never logged or stored.
    pub fn user_token(mut self, token: impl Into<String>) -> Self {
        self.grant.user_token = Some(token.into());
        self
    }

    /// The provider, when the URL's host does not say it (the host infers it from the
    /// providers' declared hosts otherwise).
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.grant.provider = Some(provider.into());
        self
    }

    /// Picks among several grants of the provider by account label (the login, email or
    /// workspace a grant covers); without it, several fitting grants are
    /// [`Error::AmbiguousGrant`].
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.grant.account = Some(account.into());
        self
    }

    /// Why this call is made, for the audit log and the user's wallet.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.note.reason = Some(reason.into());
        self
    }

    /// One context attribute for the audit log (tool name, run id, ticket, …).
    pub fn context(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.note.context.insert(key.into(), value.into());
        self
    }

    /// All context attributes at once, replacing any set before.
    pub fn contexts(mut self, context: BTreeMap<String, String>) -> Self {
        self.note.context = context;
        self
    }

    /// Adds a header to the provider request (repeat a name to send it several times).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The provider request's body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// `value` as a JSON body, with `content-type: application/json` unless a content type
    /// was already set.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => {
                if !self
                    .headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case(CONTENT_TYPE.as_str()))
                {
                    self.headers
                        .push((CONTENT_TYPE.as_str().to_owned(), "application/json".into()));
                }
                self.body = Some(body.into());
            }
            Err(e) => {
                self.error
                    .get_or_insert(Error::InvalidInput(format!("JSON body: {e}")));
            }
        }
        self
    }

    /// The setters' first error, the URL parsed (fragment dropped) and the headers checked.
    fn checked(&mut self) -> Result<Url, Error> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut url = Url::parse(&self.url).map_err(|e| {
            Error::InvalidInput(format!("the request URL is not an absolute URL: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::InvalidInput(
                "the request URL must be http or https".into(),
            ));
        }
        url.set_fragment(None);
        header_map(&self.headers, |name| {
            Error::InvalidInput(format!("header {name:?} has an invalid name or value"))
        })?;
        Ok(url)
    }
}

impl CallBuilder<Retrieve> {
    /// Asks the host (`POST /v1/retrieve`, scope `tokens:retrieve`) for the auth material of
    /// this request and returns the request ready to send, without sending it: for apps
    /// that send it with their own HTTP client.
    pub async fn authorize(mut self) -> Result<AuthorizedRequest, Error> {
        let url = self.checked()?;
        let body = self.body;
        let described = RetrieveRequest {
            grant: self.grant,
            method: self.method.as_str().to_owned(),
            url: url.as_str().to_owned(),
            headers: self.headers.clone(),
            body_sha256: Some(hex::encode(signing::sha256(
                body.as_deref().unwrap_or_default(),
            ))),
            body_base64: body.as_ref().map(|b| STANDARD.encode(b)),
            note: self.note,
        };
        let json = serde_json::to_vec(&described)
            .map_err(|e| Error::InvalidInput(format!("retrieve request: {e}")))?;
        let answer: RetrieveResponse = self
            .app
            .call_json(
                Method::POST,
                self.app.endpoint(&["v1", "retrieve"], &[]),
                json,
            )
            .await?;
        let url = Url::parse(&answer.url).map_err(|_| Error::Decode {
            detail: "the host's url is not an absolute URL".into(),
        })?;
        let mut headers = self.headers;
        for (name, value) in answer.set_headers {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
            headers.push((name, value));
        }
        // Checked here, not at send, so a bad header from the host is its error, not the
        // app's, and no value is ever quoted.
        header_map(&headers, |name| Error::Decode {
            detail: format!("the host set header {name:?} to an invalid name or value"),
        })?;
        Ok(AuthorizedRequest {
            method: self.method,
            url,
            headers,
            body,
            grant_id: answer.grant_id,
            provider: answer.provider,
            expires_at: answer.expires_at,
            request_id: answer.request_id,
        })
    }

    /// Retrieve mode: [`authorize`](Self::authorize), then sends the request to the
    /// provider from this process and returns the provider's response untouched, whatever
    /// its status. Errors are the host's (typed) or the transport's.
    pub async fn send(self) -> Result<reqwest::Response, Error> {
        let client = self.app.upstream_client().clone();
        self.authorize().await?.send_with(&client).await
    }
}

impl CallBuilder<Proxy> {
    /// When a require-approval policy rule holds the call, wait up to `timeout` for a
    /// person to decide (long-polling `GET /v1/approvals/{id}/outcome`): `send` then returns
    /// the provider's response to the approved request, or [`Error::ApprovalDenied`],
    /// [`Error::ApprovalExpired`], or — still undecided when `timeout` runs out —
    /// [`Error::ApprovalPending`] with the approval id to wait on later
    /// ([`App::approval_outcome`]). Without it, a held call is `Error::ApprovalPending` at
    /// once.
    pub fn wait_for_approval(mut self, timeout: std::time::Duration) -> Self {
        self.wait_for_approval = Some(timeout);
        self
    }

    /// Proxy mode: the host (`POST /v1/proxy`, scope `proxy:execute`) sends the request to
    /// the provider and this returns the provider's status, headers and body, whatever the
    /// status. The host's own refusals (no `tessera-upstream` header) are typed errors.
    pub async fn send(mut self) -> Result<ProxyResponse, Error> {
        let url = self.checked()?;
        let described = ProxyRequest {
            grant: self.grant,
            method: self.method.as_str().to_owned(),
            url: url.as_str().to_owned(),
            headers: self.headers,
            body_base64: self.body.map(|b| STANDARD.encode(b)),
            note: self.note,
        };
        let json = serde_json::to_vec(&described)
            .map_err(|e| Error::InvalidInput(format!("proxy request: {e}")))?;
        let response = self
            .app
            .send_signed(Method::POST, self.app.endpoint(&["v1", "proxy"], &[]), json)
            .await?;
        match (upstream(response).await, self.wait_for_approval) {
            (Err(Error::ApprovalPending { approval_id, .. }), Some(timeout)) => {
                self.app.approval_outcome(&approval_id, timeout).await
            }
            (answer, _) => answer,
        }
    }
}

/// The provider's response relayed by the host (marked with `tessera-upstream`), or the
/// host's own problem as an error (a held call's `202 approval_pending` included).
pub(crate) async fn upstream(response: reqwest::Response) -> Result<ProxyResponse, Error> {
    {
        let provider = response
            .headers()
            .get(UPSTREAM_HEADER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let status = response.status();
        match provider {
            Some(provider) => Ok(ProxyResponse {
                provider,
                inner: response,
            }),
            None if status == StatusCode::ACCEPTED => Err(read_host_error(status, response).await),
            None if status.is_success() => Err(Error::Decode {
                detail: format!("the host answered {status} without {UPSTREAM_HEADER}"),
            }),
            None => Err(read_host_error(status, response).await),
        }
    }
}

impl<M> fmt::Debug for CallBuilder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallBuilder")
            .field("method", &self.method)
            .field("grant_id", &self.grant.grant_id)
            .field("headers", &header_names(&self.headers))
            .finish_non_exhaustive()
    }
}

/// A provider request with the auth material the host computed for it (retrieve mode),
/// ready to send. `Debug` shows neither header values nor the query.
pub struct AuthorizedRequest {
    /// The method.
    pub method: Method,
    /// The URL to send to: the one described plus any query parameters the provider adds
    /// (which may carry a credential).
    pub url: Url,
    /// The headers to send: the ones described, with those the host set replacing any of
    /// the same name.
    pub headers: Vec<(String, String)>,
    /// The body described, if any.
    pub body: Option<Bytes>,
    /// The grant used.
    pub grant_id: String,
    /// The provider.
    pub provider: String,
    /// When the material stops working (RFC 3339), if the credential expires.
    pub expires_at: Option<String>,
    /// The host's id for this call (also in the audit log).
    pub request_id: String,
}

impl AuthorizedRequest {
    /// Builds the request for `client`.
    pub fn build(self, client: &reqwest::Client) -> Result<reqwest::Request, Error> {
        let headers = header_map(&self.headers, |name| {
            Error::InvalidInput(format!("header {name:?} has an invalid name or value"))
        })?;
        let mut request = client.request(self.method, self.url).headers(headers);
        if let Some(body) = self.body {
            request = request.body(body);
        }
        // The URL may carry a credential in its query: never let it into an error.
        request
            .build()
            .map_err(|e| Error::Transport(e.without_url()))
    }

    /// Sends the request with `client` and returns the provider's response untouched.
    pub async fn send_with(self, client: &reqwest::Client) -> Result<reqwest::Response, Error> {
        let request = self.build(client)?;
        client
            .execute(request)
            .await
            .map_err(|e| Error::Transport(e.without_url()))
    }
}

impl fmt::Debug for AuthorizedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.url.clone();
        url.set_query(None);
        f.debug_struct("AuthorizedRequest")
            .field("method", &self.method)
            .field("url", &format_args!("{url} (query redacted)"))
            .field("headers", &header_names(&self.headers))
            .field("grant_id", &self.grant_id)
            .field("provider", &self.provider)
            .field("expires_at", &self.expires_at)
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

/// A provider's answer relayed by the host (proxy mode): its status, headers and body,
/// read whole or as a stream.
pub struct ProxyResponse {
    provider: String,
    inner: reqwest::Response,
}

impl ProxyResponse {
    /// The provider's HTTP status.
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    /// The provider's headers (as relayed by the host, plus `tessera-upstream` and
    /// `tessera-request-id`).
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The provider id the host named in `tessera-upstream`.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The host's id for this call (`tessera-request-id`), also in the audit log.
    pub fn request_id(&self) -> Option<&str> {
        self.inner
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
    }

    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes, Error> {
        self.inner.bytes().await.map_err(Error::Transport)
    }

    /// The whole body as text (decoded per the `content-type` charset, UTF-8 by default).
    pub async fn text(self) -> Result<String, Error> {
        self.inner.text().await.map_err(Error::Transport)
    }

    /// The whole body parsed as JSON.
    pub async fn json<T: DeserializeOwned>(self) -> Result<T, Error> {
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::decode("the provider's JSON body", &e))
    }

    /// The body as a stream of chunks, as they arrive.
    pub fn bytes_stream(self) -> impl Stream<Item = Result<Bytes, Error>> + Send + 'static {
        self.inner
            .bytes_stream()
            .map(|chunk| chunk.map_err(Error::Transport))
    }

    /// The underlying HTTP response (from the host; its URL is the host's `/v1/proxy`).
    pub fn into_inner(self) -> reqwest::Response {
        self.inner
    }
}

impl fmt::Debug for ProxyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyResponse")
            .field("provider", &self.provider)
            .field("status", &self.status())
            .field("request_id", &self.request_id())
            .finish_non_exhaustive()
    }
}

/// The headers as a map (repeated names kept, in order), or `invalid(name)` for the first
/// header that is not valid HTTP. Never quotes a value.
fn header_map(
    headers: &[(String, String)],
    invalid: impl Fn(&str) -> Error,
) -> Result<HeaderMap, Error> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return Err(invalid(name));
        };
        map.append(n, v);
    }
    Ok(map)
}

fn header_names(headers: &[(String, String)]) -> Vec<&str> {
    headers.iter().map(|(n, _)| n.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorized_request_debug_hides_header_values_and_the_query() {
        let request = AuthorizedRequest {
            method: Method::GET,
            url: Url::parse("https://api.example.com/v1/x?api_key=sk_live_secret").unwrap(),
            headers: vec![("authorization".into(), "Bearer tok_secret".into())],
            body: None,
            grant_id: "g1".into(),
            provider: "example".into(),
            expires_at: None,
            request_id: "r1".into(),
        };
        let debug = format!("{request:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains("authorization"), "{debug}");
        assert!(debug.contains("https://api.example.com/v1/x"), "{debug}");
    }

    #[test]
    fn invalid_headers_are_named_but_their_values_never_quoted() {
        let err = header_map(&[("x-key".into(), "sk_secret\n".into())], |n| {
            Error::InvalidInput(format!("header {n:?} bad"))
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("x-key") && !text.contains("sk_secret"),
            "{text}"
        );
    }
}
