//! AWS provider: an access key pair (optionally with a session token), managed by the
//! operator, signing requests with Signature Version 4.
//!
//! Connecting validates the keys with STS `GetCallerIdentity` (a signed form `POST` to
//! `https://sts.{region}.amazonaws.com/`); the account label is the caller's ARN. Signing
//! covers every service under `*.amazonaws.com` and `*.api.aws`: the signing service and
//! region come from the host (`service.region.amazonaws.com`, S3's virtual-host and legacy
//! forms, global endpoints in `us-east-1`) unless the credential names a `service`.
//! Classification reads AWS error codes (JSON `__type`, XML `<Code>`, `x-amzn-ErrorType`),
//! because AWS reports bad keys, missing permissions and throttling with 400/403 as well as
//! 401/429. Static keys neither expire nor refresh, and AWS has no revocation request for
//! them.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod sigv4;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tessera_provider_sdk::classify::retry_after;
use tessera_provider_sdk::http::{self, header, pair};
use tessera_provider_sdk::{
    AuthKind, Classification, Connected, Context, Credential, Field, HttpRequest, HttpResponse,
    Input, Outgoing, Provider, ProviderError, ProviderInfo, Step, UpstreamError, hosts,
};

use sigv4::{Params, TokenPlacement};

/// The AWS provider.
pub struct Aws;

/// Hosts AWS credentials are signed for.
const ALLOWED_HOSTS: &[&str] = &["*.amazonaws.com", "*.api.aws"];

/// The region used when the operator names none, and by global endpoints.
const DEFAULT_REGION: &str = "us-east-1";

/// The body of STS `GetCallerIdentity`.
const GET_CALLER_IDENTITY: &str = "Action=GetCallerIdentity&Version=2011-06-15";

/// Endpoint prefixes whose signing name differs from the host label.
const SERVICE_ALIASES: &[(&str, &str)] = &[
    ("email", "ses"),
    ("bedrock-runtime", "bedrock"),
    ("bedrock-agent-runtime", "bedrock"),
    ("bedrock-agent", "bedrock"),
    ("runtime.sagemaker", "sagemaker"),
];

fn field(
    name: &str,
    label: &str,
    description: &str,
    secret: bool,
    optional: bool,
    example: &str,
) -> Field {
    Field {
        name: name.into(),
        label: label.into(),
        description: description.into(),
        secret,
        optional,
        example: Some(example.into()),
    }
}

fn is_token(value: &str, extra: &[char]) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

/// Whether a host label looks like a region (`us-east-1`, `eu-central-2`, `us-gov-west-1`).
fn looks_like_region(label: &str) -> bool {
    let mut parts = label.split('-');
    let first = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    first.len() == 2
        && first.chars().all(|c| c.is_ascii_lowercase())
        && rest.len() >= 2
        && rest
            .last()
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// The signing service and region for a host under `amazonaws.com` or `api.aws`.
pub fn service_and_region(host: &str) -> Option<(String, String)> {
    let stem = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".api.aws"))?;
    let labels: Vec<&str> = stem.split('.').filter(|l| !l.is_empty()).collect();
    let region_at = labels.iter().position(|l| looks_like_region(l));
    let region = region_at
        .and_then(|i| labels.get(i).copied())
        .unwrap_or(DEFAULT_REGION);
    // S3: `s3`, `bucket.s3`, `s3.dualstack.region`, `s3-region`, `s3-accelerate`, ...
    if let Some(s3) = labels
        .iter()
        .find(|l| **l == "s3" || l.starts_with("s3-") || **l == "s3-accelerate")
    {
        let legacy_region = s3.strip_prefix("s3-").filter(|r| looks_like_region(r));
        let region = region_at.map_or(legacy_region.unwrap_or(DEFAULT_REGION), |_| region);
        return Some(("s3".into(), region.into()));
    }
    let service_labels = match region_at {
        Some(i) => labels.get(..i)?,
        None => labels.as_slice(),
    };
    let joined = service_labels.join(".");
    let alias = SERVICE_ALIASES
        .iter()
        .find(|(prefix, _)| joined == *prefix || joined.ends_with(&format!(".{prefix}")));
    if let Some((_, alias)) = alias {
        return Some(((*alias).into(), region.into()));
    }
    // `{api-id}.execute-api.region`: the label right before the region names the service.
    let service = service_labels.last()?;
    Some(((*service).into(), region.into()))
}

/// The connect flow's pending credential, kept encrypted by the host.
#[derive(Serialize, Deserialize)]
struct Pending {
    secrets: Vec<(String, String)>,
    metadata: Vec<(String, String)>,
}

fn invalid(msg: &str) -> ProviderError {
    ProviderError::InvalidInput(msg.to_owned())
}

fn begin(ctx: &Context) -> Result<Step, ProviderError> {
    let get = |name: &str| {
        pair(&ctx.secret_fields, name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let access_key_id = get("access_key_id").ok_or_else(|| invalid("access_key_id is required"))?;
    if !(16..=128).contains(&access_key_id.len()) || !is_token(access_key_id, &[]) {
        return Err(invalid(
            "access_key_id must be 16 to 128 letters and digits (AKIA…, ASIA…)",
        ));
    }
    let secret_access_key =
        get("secret_access_key").ok_or_else(|| invalid("secret_access_key is required"))?;
    if secret_access_key
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid("secret_access_key must not contain spaces"));
    }
    let session_token = get("session_token");
    if session_token.is_some_and(|t| t.chars().any(|c| c.is_whitespace() || c.is_control())) {
        return Err(invalid("session_token must not contain spaces"));
    }
    let region = get("region").unwrap_or(DEFAULT_REGION);
    if !looks_like_region(region) {
        return Err(invalid("region must look like us-east-1"));
    }
    let service = get("service");
    if service.is_some_and(|s| !is_token(s, &['-']) || s.chars().any(|c| c.is_ascii_uppercase())) {
        return Err(invalid(
            "service must be an AWS signing name such as s3 or dynamodb",
        ));
    }

    let mut secrets = vec![
        ("access_key_id".to_owned(), access_key_id.to_owned()),
        ("secret_access_key".to_owned(), secret_access_key.to_owned()),
    ];
    if let Some(token) = session_token {
        secrets.push(("session_token".into(), token.into()));
    }
    let mut metadata = vec![("region".to_owned(), region.to_owned())];
    if let Some(service) = service {
        metadata.push(("service".into(), service.into()));
    }

    let mut request = HttpRequest {
        method: "POST".into(),
        url: format!("https://sts.{region}.amazonaws.com/"),
        headers: http::owned_pairs(&[
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("Accept", "application/xml"),
        ]),
        body: GET_CALLER_IDENTITY.as_bytes().to_vec(),
    };
    sigv4::sign(
        &mut request,
        &Params {
            access_key_id,
            secret_access_key,
            session_token,
            token_placement: TokenPlacement::Signed,
            region,
            service: "sts",
            now: ctx.now,
        },
    )?;
    let state = serde_json::to_vec(&Pending { secrets, metadata })
        .map_err(|_| invalid("the flow state could not be encoded"))?;
    Ok(Step::Send(Outgoing { request, state }))
}

/// The text of the first `<tag>…</tag>` in an XML body, entity-decoded.
fn xml_text(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = body.find(&open)? + open.len();
    let len = body.get(start..)?.find(&close)?;
    let raw = body.get(start..start + len)?.trim();
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

fn finish(state: &[u8], input: Input) -> Result<Step, ProviderError> {
    let pending: Pending = serde_json::from_slice(state)
        .map_err(|_| invalid("the flow state does not belong to this provider"))?;
    let Input::HttpResponse(response) = input else {
        return Err(invalid("unexpected input for this step of the flow"));
    };
    let body = String::from_utf8_lossy(&response.body);
    if !(200..300).contains(&response.status) {
        let code = error_code(&response).unwrap_or_else(|| format!("http_{}", response.status));
        return Err(match code.as_str() {
            "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "IncompleteSignature"
            | "AccessDenied" => {
                ProviderError::InvalidInput(format!("AWS rejected the access key ({code})"))
            }
            _ => ProviderError::Upstream(UpstreamError {
                status: response.status,
                code,
                description: "STS GetCallerIdentity failed".into(),
            }),
        });
    }
    let arn = xml_text(&body, "Arn")
        .filter(|a| a.starts_with("arn:"))
        .ok_or_else(|| {
            ProviderError::MalformedResponse("the GetCallerIdentity response has no Arn".into())
        })?;
    let mut metadata = pending.metadata;
    if let Some(account) = xml_text(&body, "Account") {
        metadata.push(("account".into(), account));
    }
    metadata.push(("arn".into(), arn.clone()));
    Ok(Step::Done(Connected {
        credential: Credential {
            secrets: pending.secrets,
            metadata,
            scopes: Vec::new(),
            expires_at: None,
        },
        account_label: arn,
    }))
}

/// The AWS error code of a response: `x-amzn-ErrorType`, JSON `__type`/`code`, or XML
/// `<Code>`; namespaces (`…#Code`) and suffixes (`Code:http://…`) stripped.
fn error_code(response: &HttpResponse) -> Option<String> {
    let clean = |s: &str| {
        let s = s.rsplit('#').next().unwrap_or(s);
        let s = s.split(':').next().unwrap_or(s);
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_owned())
    };
    if let Some(code) = header(&response.headers, "x-amzn-errortype").and_then(clean) {
        return Some(code);
    }
    if let Ok(json) = serde_json::from_slice::<Value>(&response.body) {
        for key in ["__type", "code", "Code"] {
            if let Some(code) = json.get(key).and_then(Value::as_str).and_then(clean) {
                return Some(code);
            }
        }
        return None;
    }
    xml_text(&String::from_utf8_lossy(&response.body), "Code").and_then(|c| clean(&c))
}

const UNAUTHORIZED_CODES: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "AuthFailure",
];
const DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnauthorizedAccess",
];
const THROTTLED_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "RequestLimitExceededException",
];

fn classify_aws(response: &HttpResponse, now: u64) -> Classification {
    let status = response.status;
    if status < 400 {
        return Classification::Ok;
    }
    let code = error_code(response).unwrap_or_default();
    if THROTTLED_CODES.contains(&code.as_str()) || status == 429 {
        return Classification::RateLimited(retry_after(&response.headers, now));
    }
    if UNAUTHORIZED_CODES.contains(&code.as_str()) || status == 401 {
        return Classification::Unauthorized;
    }
    if DENIED_CODES.contains(&code.as_str()) {
        return Classification::InsufficientScope(Vec::new());
    }
    if status >= 500 {
        return Classification::ServerError;
    }
    Classification::Ok
}

fn sign_request(
    mut request: HttpRequest,
    credential: &Credential,
    now: u64,
) -> Result<HttpRequest, ProviderError> {
    let url = hosts::check_url(&request.url, ALLOWED_HOSTS, &credential.metadata)?;
    let (inferred_service, region) = service_and_region(&url.host).ok_or_else(|| {
        ProviderError::HostNotAllowed(format!("{} is not an AWS endpoint", url.host))
    })?;
    let service = pair(&credential.metadata, "service")
        .filter(|s| !s.is_empty())
        .map_or(inferred_service, str::to_owned);
    let secret = |name: &str| {
        pair(&credential.secrets, name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                ProviderError::ReauthorizeRequired(format!("the credential has no {name}"))
            })
    };
    let access_key_id = secret("access_key_id")?;
    let secret_access_key = secret("secret_access_key")?;
    let session_token = pair(&credential.secrets, "session_token").filter(|v| !v.is_empty());
    sigv4::sign(
        &mut request,
        &Params {
            access_key_id,
            secret_access_key,
            session_token,
            token_placement: TokenPlacement::Signed,
            region: &region,
            service: &service,
            now,
        },
    )?;
    Ok(request)
}

impl Provider for Aws {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "aws".into(),
            display_name: "Amazon Web Services".into(),
            version: "0.1.0".into(),
            categories: vec!["cloud".into(), "infrastructure".into()],
            auth_kind: AuthKind::ManagedSecret,
            default_scopes: Vec::new(),
            scope_separator: " ".into(),
            scopes: Vec::new(),
            allowed_hosts: ALLOWED_HOSTS.iter().map(|h| (*h).to_owned()).collect(),
            secret_fields: vec![
                field(
                    "access_key_id",
                    "Access key ID",
                    "The access key ID of an IAM user or role session (IAM console → Security credentials).",
                    false,
                    false,
                    "AKIAIOSFODNN7EXAMPLE",
                ),
                field(
                    "secret_access_key",
                    "Secret access key",
                    "The secret shown once when the access key was created.",
                    true,
                    false,
                    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                ),
                field(
                    "session_token",
                    "Session token",
                    "Only for temporary credentials from STS (ASIA… keys).",
                    true,
                    true,
                    "IQoJb3JpZ2luX2VjE…",
                ),
                field(
                    "region",
                    "Region",
                    "The default region, used to validate the keys (us-east-1 when empty).",
                    false,
                    true,
                    "eu-west-1",
                ),
                field(
                    "service",
                    "Service",
                    "A signing name to use for every request; when empty it is read from each request's host.",
                    false,
                    true,
                    "execute-api",
                ),
            ],
            connection_params: Vec::new(),
            pkce: false,
            supports_refresh: false,
            supports_revoke: false,
            logo_url: Some(
                "https://a0.awsstatic.com/libra-css/images/logos/aws_logo_smile_1200x630.png"
                    .into(),
            ),
            docs_url: Some(
                "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html".into(),
            ),
        }
    }

    fn begin_connect(ctx: Context) -> Step {
        begin(&ctx).unwrap_or_else(Step::Fail)
    }

    fn resume(_ctx: Context, state: Vec<u8>, input: Input) -> Step {
        finish(&state, input).unwrap_or_else(Step::Fail)
    }

    fn sign(
        request: HttpRequest,
        credential: Credential,
        now: u64,
    ) -> Result<HttpRequest, ProviderError> {
        sign_request(request, &credential, now)
    }

    fn classify(response: HttpResponse, now: u64) -> Classification {
        classify_aws(&response, now)
    }
}

tessera_provider_sdk::export_provider!(Aws);

#[cfg(test)]
mod tests;
