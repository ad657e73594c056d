//! Webhooks end to end: a real `tessera serve` sends an app's endpoint (a receiver on
//! 127.0.0.1 that refuses its first delivery) signed events for a grant's life and an
//! approval's, retries the refused one with the same event id, and every delivery verifies
//! with the SDK's `webhooks::verify` against the secret shown once; a changed body does not.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tessera_proto::policy::{RuleKind, RuleRequest};
use tessera_proto::webhooks::WebhookRequest;
use tessera_sdk::webhooks::{SIGNATURE_HEADER, WebhookError, verify};
use tessera_sdk::{App, Error, Method};

use super::calls::{KEY_1, Stripe, create_key, runtime, start_stripe, stripe_secret};
use super::serve::start_with;
use super::*;

/// What the receiver got: the signature header and the body of each request.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A receiver that answers `500` to its first request and `204` to the others.
async fn start_receiver(received: Received) -> Result<String> {
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let received = received.clone();
            async move {
                let signature = headers
                    .get(SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let mut all = received
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                all.push((signature, body));
                if all.len() == 1 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/hook"))
}

fn now() -> Result<u64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())
}

#[test]
#[allow(clippy::too_many_lines)] // one story
fn grant_and_approval_events_are_signed_retried_and_verifiable() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        init_with_app(dir, env)?;
        let key = create_key(dir, env, "billing")?;
        let stripe = Stripe::accepting(&[(KEY_1, None)])?;
        let received = Received::default();
        let (origin, hook_url) = rt.block_on(async {
            Ok::<_, anyhow::Error>((
                start_stripe(stripe.clone()).await?,
                start_receiver(received.clone()).await?,
            ))
        })?;
        let overrides = format!("api.stripe.com={origin}");
        let mut envs = env.to_vec();
        envs.push(("TESSERA_EGRESS_OVERRIDES", &overrides));
        envs.push(("TESSERA_WEBHOOK_RETRY_SECS", "1"));
        let host = start_with(dir, None, &envs)?;
        let a = App::new(&key, &format!("http://{}", host.addr))?;
        rt.block_on(async {
            // Bad endpoints are refused; the first configuration shows the secret once.
            for (url, events) in [
                ("http://hooks.example.com/x", vec![]),
                (hook_url.as_str(), vec!["grant.exploded".to_owned()]),
            ] {
                let r = a
                    .configure_webhook(&WebhookRequest {
                        url: url.into(),
                        events,
                        rotate_secret: false,
                    })
                    .await;
                ensure!(
                    matches!(r, Err(Error::InvalidRequest { .. })),
                    "{url}: {r:?}"
                );
            }
            let configured = a
                .configure_webhook(&WebhookRequest {
                    url: hook_url.clone(),
                    events: Vec::new(),
                    rotate_secret: false,
                })
                .await?;
            let secret = configured.secret.clone().context("the secret, once")?;
            ensure!(secret.starts_with("whsec_"), "{configured:?}");
            let again = a
                .configure_webhook(&WebhookRequest {
                    url: hook_url.clone(),
                    events: Vec::new(),
                    rotate_secret: false,
                })
                .await?;
            ensure!(again.secret.is_none() && a.webhook().await?.secret.is_none());

            // A grant's life and an approval's.
            let grant = a.set_managed_secret(&stripe_secret(KEY_1)).await?.grant;
            a.create_policy_rule(&RuleRequest {
                name: "customer-writes".into(),
                applies_to: "provider:stripe".into(),
                rule: RuleKind::RequireApproval {
                    methods: vec!["POST".into()],
                    paths: Vec::new(),
                    ttl_secs: None,
                },
            })
            .await?;
            let held = a
                .proxy_request(Method::POST, "https://api.stripe.com/v1/customers")
                .body("name=Ada")
                .send()
                .await;
            let Err(Error::ApprovalPending { approval_id, .. }) = held else {
                bail!("expected a held call: {held:?}");
            };
            a.approve(&approval_id, None, Some("fine")).await?;
            a.revoke_grant(&grant.id, Some("customer left")).await?;

            let wanted = [
                "grant.created",
                "approval.requested",
                "approval.approved",
                "approval.executed",
                "grant.revoked",
            ];
            let mut events = Vec::new();
            for _ in 0..300 {
                events = received
                    .lock()
                    .map_err(|_| anyhow::anyhow!("lock"))?
                    .clone();
                let types: Vec<String> = events
                    .iter()
                    .filter_map(|(_, body)| serde_json::from_str::<serde_json::Value>(body).ok())
                    .filter_map(|e| e["type"].as_str().map(str::to_owned))
                    .collect();
                // Five events, the first of them twice (refused, then retried).
                if wanted.iter().all(|w| types.iter().any(|t| t == w)) && events.len() >= 6 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut verified = Vec::new();
            for (signature, body) in &events {
                let event = verify(&secret, signature, body.as_bytes(), 300, now()?)
                    .map_err(|e| anyhow::anyhow!("{e}: {body}"))?;
                verified.push(event);
            }
            for w in wanted {
                ensure!(
                    verified.iter().any(|e| e.event_type == w),
                    "no {w} event in {verified:?}"
                );
            }
            // The refused first delivery came again, same id.
            let first = &verified[0];
            ensure!(
                verified.iter().filter(|e| e.id == first.id).count() == 2,
                "the first event is retried: {verified:?}"
            );
            let revoked = verified
                .iter()
                .find(|e| e.event_type == "grant.revoked")
                .context("revoked")?;
            ensure!(
                revoked.data["grant_id"] == grant.id.as_str()
                    && revoked.data["actor"]["kind"] == "app_key"
                    && revoked.data["reason"] == "customer left"
                    && revoked.data["detail"]["via"] == "api",
                "{revoked:?}"
            );
            let approved = verified
                .iter()
                .find(|e| e.event_type == "approval.approved")
                .context("approved")?;
            ensure!(
                approved.data["detail"]["approval_id"] == approval_id.as_str()
                    && approved.data["detail"]["note"] == "fine",
                "{approved:?}"
            );
            ensure!(
                !events.iter().any(|(_, body)| body.contains(KEY_1)),
                "no secret in any event"
            );

            // A changed body, or another secret, does not verify.
            let (signature, body) = &events[1];
            let changed = body.replacen("approval", "apprOval", 1);
            ensure!(
                verify(&secret, signature, changed.as_bytes(), 300, now()?).err()
                    == Some(WebhookError::Mismatch)
            );
            ensure!(
                verify("whsec_other", signature, body.as_bytes(), 300, now()?).err()
                    == Some(WebhookError::Mismatch)
            );

            let deliveries = a.webhook_deliveries(None).await?;
            let retried = deliveries
                .iter()
                .find(|d| d.event_id == first.id)
                .context("the first delivery")?;
            ensure!(
                retried.status == "delivered"
                    && retried.attempts == 2
                    && retried.delivered_at.is_some(),
                "{retried:?}"
            );
            a.remove_webhook().await?;
            let gone = a.webhook().await;
            ensure!(
                gone.as_ref().err().and_then(Error::code) == Some("webhook_not_configured"),
                "{gone:?}"
            );
            let audited = a.audit().action("webhook.configure").list().await?.items;
            ensure!(
                audited.len() == 2
                    && audited
                        .iter()
                        .all(|r| !r.detail.to_string().contains(&secret)),
                "{audited:?}"
            );
            Ok(())
        })
    })
}
