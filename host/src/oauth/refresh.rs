//! Token refresh: before a call signs with an OAuth credential that expires within the skew
//! (or after the provider answered `401` to it), the credential is renewed through the
//! component's `refresh` state machine, one refresh at a time per credential across every
//! host instance.
//!
//! Single flight: inside a process, callers of one credential queue on an async mutex and
//! the first one refreshes; across instances, the refresher holds a lease in the credential
//! row (`refresh_lease_owner`/`refresh_lease_until`, longer than the HTTP timeout) and the
//! others poll the row's revision until it moves. The new tokens are committed (a
//! compare-and-swap on the revision, which also frees the lease) before anyone else may
//! refresh, so a rotated refresh token is never used twice. On `invalid_grant` the credential
//! is read again before anything is concluded: if another refresher moved it meanwhile, its
//! tokens are used; only a credential that is really dead marks the grant `reauth_required`.
//!
//! Must never: send a refresh token twice, keep tokens it could not commit, or log a token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rand::RngCore as _;

use super::config::ProviderConfigs;
use crate::egress::Egress;
use crate::grants::{GrantError, Grants, Resolved, provider_error_text, unix_seconds};
use crate::plugin::types::{Connected, Context, Input, ProviderError, Step};
use crate::store::credentials;
use crate::store::{CredentialId, Store, Timestamp};
use tessera_proto::grants::GrantKind;

/// How close to its expiry a credential is refreshed before use.
pub const EXPIRY_SKEW: Duration = Duration::from_mins(1);

/// How often a caller waiting for another instance's refresh looks at the row again.
const POLL: Duration = Duration::from_millis(50);

/// The most `send` steps one refresh may take.
const MAX_STEPS: usize = 4;

/// The refresh service. Cheap to clone.
#[derive(Clone)]
pub struct Refresher {
    grants: Grants,
    configs: ProviderConfigs,
    store: Store,
    egress: Egress,
    /// How long a lease holds: longer than one token request can take.
    lease: Duration,
    /// This process's name in leases.
    instance: Arc<str>,
    /// How close to its expiry a credential is refreshed.
    skew: Duration,
    locks: Arc<Mutex<HashMap<CredentialId, Weak<Turn>>>>,
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("instance", &self.instance)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// The queue of one credential's callers in this process, holding the newest credential
/// this process refreshed or read, so that callers who waited for a refresh take its result
/// without reading the database one after the other.
type Turn = tokio::sync::Mutex<Option<Latest>>;

/// A credential as last refreshed or read, by revision.
struct Latest {
    revision: i64,
    credential: crate::plugin::types::Credential,
    params: Vec<(String, String)>,
    expires_at: Option<Timestamp>,
}

impl Latest {
    fn of(r: &Resolved) -> Self {
        Self {
            revision: r.revision,
            credential: r.credential.clone(),
            params: r.params.clone(),
            expires_at: r.expires_at,
        }
    }

    /// `base` with this credential in place of its own.
    fn apply(&self, base: &Resolved) -> Resolved {
        Resolved {
            grant: base.grant.clone(),
            plugin: Arc::clone(&base.plugin),
            credential: self.credential.clone(),
            params: self.params.clone(),
            expires_at: self.expires_at,
            revision: self.revision,
        }
    }
}

impl Drop for Latest {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        for (_, v) in &mut self.credential.secrets {
            v.zeroize();
        }
    }
}

/// Why a refresh is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Before use: only if the credential expires within [`EXPIRY_SKEW`].
    Expiring,
    /// The provider refused the credential: refresh unless someone already did since it was
    /// read.
    Refused,
}

impl Refresher {
    /// A refresher over the grant service. `http_timeout` is the egress timeout: the lease
    /// lasts twice that plus two seconds (the commit after the answer fits easily).
    pub fn new(grants: Grants, configs: ProviderConfigs, http_timeout: Duration) -> Self {
        let mut id = [0u8; 8];
        rand::rng().fill_bytes(&mut id);
        Self {
            store: grants.store().clone(),
            egress: grants.egress().clone(),
            grants,
            configs,
            lease: http_timeout * 2 + Duration::from_secs(2),
            instance: Arc::from(hex::encode(id)),
            skew: EXPIRY_SKEW,
            locks: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn lock_for(&self, id: CredentialId) -> Arc<Turn> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(lock) = locks.get(&id).and_then(Weak::upgrade) {
            return lock;
        }
        locks.retain(|_, w| w.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(None));
        locks.insert(id, Arc::downgrade(&lock));
        lock
    }

    /// Whether `resolved` is an OAuth credential this refresher can renew.
    pub fn refreshable(resolved: &Resolved) -> bool {
        resolved.grant.kind == GrantKind::Oauth && resolved.plugin.info().supports_refresh
    }

    fn expiring(&self, resolved: &Resolved, now: Timestamp) -> bool {
        let skew = i64::try_from(self.skew.as_millis()).unwrap_or(i64::MAX);
        resolved
            .expires_at
            .is_some_and(|at| at.unix_millis() - now.unix_millis() <= skew)
    }

    /// Whether `resolved` can no longer be used at all (past its expiry).
    fn expired(resolved: &Resolved, now: Timestamp) -> bool {
        resolved
            .expires_at
            .is_some_and(|at| at.unix_millis() <= now.unix_millis())
    }

    /// The same refresher, refreshing credentials that expire within `skew` (default
    /// [`EXPIRY_SKEW`]).
    #[must_use]
    pub fn with_skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// `resolved`, refreshed if `reason` calls for it; otherwise unchanged.
    pub async fn ensure_fresh(
        &self,
        resolved: Resolved,
        reason: Reason,
    ) -> Result<Resolved, GrantError> {
        if !Self::refreshable(&resolved)
            || (reason == Reason::Expiring && !self.expiring(&resolved, Timestamp::now()))
        {
            return Ok(resolved);
        }
        let lock = self.lock_for(resolved.grant.credential_id);
        let mut turn = lock.lock().await;
        let seen = resolved.revision;
        // Refreshed by someone else since this caller read it: use that (one refresh per
        // expiry, however many callers noticed it), unless it is already unusable.
        if let Some(latest) = turn.as_ref()
            && latest.revision > seen
            && latest.expires_at.is_none_or(|at| at > Timestamp::now())
        {
            return Ok(latest.apply(&resolved));
        }
        let mut current = self.grants.reload(&resolved).await?;
        if current.revision != seen && !Self::expired(&current, Timestamp::now()) {
            *turn = Some(Latest::of(&current));
            return Ok(current);
        }
        let deadline = tokio::time::Instant::now() + self.lease * 2;
        loop {
            let now = Timestamp::now();
            let until = Timestamp::from_unix_millis(
                now.unix_millis() + i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX),
            );
            let (app, id) = (current.grant.app_id, current.grant.credential_id);
            if credentials::take_refresh_lease(&self.store, app, id, &self.instance, now, until)
                .await?
            {
                // The lease is ours; read once more in case a commit landed just before.
                let fresh = self.grants.reload(&current).await?;
                if fresh.revision != current.revision && !Self::expired(&fresh, Timestamp::now()) {
                    credentials::release_refresh_lease(&self.store, app, id, &self.instance)
                        .await?;
                    *turn = Some(Latest::of(&fresh));
                    return Ok(fresh);
                }
                let result = self.refresh_held(fresh).await;
                match &result {
                    Ok(r) => *turn = Some(Latest::of(r)),
                    Err(_) => {
                        credentials::release_refresh_lease(&self.store, app, id, &self.instance)
                            .await?;
                    }
                }
                return result;
            }
            // Another instance is refreshing: wait for its commit (or its lease to lapse).
            loop {
                if tokio::time::Instant::now() > deadline {
                    return Err(GrantError::RefreshFailed {
                        provider: current.grant.provider.clone(),
                        reason: "another host instance holds the refresh and has not finished"
                            .into(),
                    });
                }
                tokio::time::sleep(POLL).await;
                match credentials::refresh_state(&self.store, app, id, Timestamp::now()).await? {
                    None => {
                        return Err(GrantError::Revoked {
                            id: current.grant.id.to_string(),
                        });
                    }
                    Some((revision, _)) if revision != current.revision => {
                        let fresh = self.grants.reload(&current).await?;
                        if !Self::expired(&fresh, Timestamp::now()) {
                            *turn = Some(Latest::of(&fresh));
                            return Ok(fresh);
                        }
                        current = fresh;
                        break;
                    }
                    Some((_, true)) => {}
                    Some((_, false)) => break,
                }
            }
        }
    }

    /// Runs the component's refresh with the lease held, and commits the result.
    async fn refresh_held(&self, resolved: Resolved) -> Result<Resolved, GrantError> {
        let info = resolved.plugin.info().clone();
        let failed = |reason: String| GrantError::RefreshFailed {
            provider: info.id.clone(),
            reason,
        };
        let config = self
            .configs
            .client(resolved.grant.app_id, &info.id)
            .await
            .map_err(|e| failed(e.to_string()))?
            .ok_or_else(|| failed("no OAuth client is configured for this provider".into()))?;
        let mut entropy = vec![0u8; 32];
        rand::rng().fill_bytes(&mut entropy);
        let ctx = Context {
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.as_ref().map(|s| s.as_str().to_owned()),
            redirect_uri: config.redirect_uri.clone().unwrap_or_default(),
            scopes: resolved.credential.scopes.clone(),
            connection_params: resolved.params.clone(),
            secret_fields: Vec::new(),
            extra_params: config.extra_params.clone(),
            state: String::new(),
            entropy,
            now: unix_seconds(),
        };
        let component = |source| GrantError::Component {
            provider: info.id.clone(),
            source,
        };
        let mut step = resolved
            .plugin
            .refresh_async(ctx.clone(), resolved.credential.clone())
            .await
            .map_err(component)?;
        let mut connected: Option<Connected> = None;
        for _ in 0..MAX_STEPS {
            match step {
                Step::Done(c) => {
                    connected = Some(c);
                    break;
                }
                Step::Fail(ProviderError::ReauthorizeRequired(why)) => {
                    return self.dead(&resolved, &why).await;
                }
                Step::Fail(e) => return Err(failed(provider_error_text(&e))),
                Step::Redirect(_) => {
                    return Err(failed("the component asked for a browser redirect".into()));
                }
                Step::Send(outgoing) => {
                    let response = self
                        .egress
                        .exchange(&outgoing.request, &info.allowed_hosts, &resolved.params)
                        .await?;
                    step = resolved
                        .plugin
                        .resume_async(ctx.clone(), outgoing.state, Input::HttpResponse(response))
                        .await
                        .map_err(component)?;
                }
            }
        }
        let connected =
            connected.ok_or_else(|| failed(format!("more than {MAX_STEPS} refresh steps")))?;
        let record = self.grants.refreshed_record(&resolved, &connected)?;
        let committed = credentials::commit_refresh(
            &self.store,
            &record,
            resolved.revision,
            &self.instance,
            Timestamp::now(),
        )
        .await?;
        if !committed {
            // Only possible if this lease lapsed and another refresher committed first.
            tracing::error!(
                grant = %resolved.grant.id,
                "a refreshed credential could not be stored: another refresh committed first"
            );
            return Err(failed(
                "another refresh of this credential finished first; retry the call".into(),
            ));
        }
        let fresh = self.grants.reload(&resolved).await?;
        if let Err(e) = self.grants.record_refresh(&fresh).await {
            tracing::error!(grant = %fresh.grant.id, error = %e, "a refresh was not audited");
        }
        Ok(fresh)
    }

    /// The provider says the refresh token is dead. Unless the credential moved meanwhile
    /// (then its new tokens are used), the grant needs the user to connect again.
    async fn dead(&self, resolved: &Resolved, why: &str) -> Result<Resolved, GrantError> {
        let fresh = self.grants.reload(resolved).await?;
        if fresh.revision != resolved.revision {
            return Ok(fresh);
        }
        credentials::release_refresh_lease(
            &self.store,
            resolved.grant.app_id,
            resolved.grant.credential_id,
            &self.instance,
        )
        .await?;
        self.grants.mark_reauth_required(resolved, why).await?;
        Err(GrantError::ReauthRequired {
            id: resolved.grant.id.to_string(),
        })
    }
}
