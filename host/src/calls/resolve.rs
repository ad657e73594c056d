//! Grant resolution: which grant a call means.
//!
//! An explicit `grant_id` wins. Otherwise the host looks, in order, through tiers of the
//! caller's own principals and takes the first tier where the call fits exactly one grant:
//!
//! | caller | with `user_token` | without |
//! |---|---|---|
//! | app key | the user's grants, then their groups' grants | the app's own (`system`) grants |
//! | agent key | the user's grants delegated to the agent, then their groups' | the agent's own grants, then any grant delegated to it |
//!
//! Within a tier only grants of the provider are considered — the one named, or every
//! provider whose declared hosts could hold the URL's host — and, when the call gives an
//! `account`, only grants whose account label is that (case-insensitive). Several fits in the
//! first non-empty tier is `ambiguous_grant`, listing them; none in any tier is
//! `grant_not_found`. Principal kinds are never interchangeable: a user token never reaches
//! the app's `system` grants, an app key without one never reaches a user's.
//!
//! Must never: log or store the user token, or list another app's (or, for an agent, an
//! undelegated) grant as a candidate.

use tessera_proto::calls::{GrantCandidate, GrantSelector};
use tessera_proto::grants::Principal;

use super::{CallContext, CallError, Calls};
use crate::grants::GrantError;
use crate::identity::{IdentityError, UserIdentity};
use crate::store::grants::{self as grant_repo, Candidates, GrantRecord};
use crate::store::{StoreError, Timestamp, idp_configs};

/// The most candidates an `ambiguous_grant` problem lists.
pub(super) const MAX_CANDIDATES: u32 = 20;

/// What resolution found: the grant to use and, with a `user_token`, whom it names.
pub(super) struct Picked {
    /// The grant id, as the caller would write it.
    pub grant_id: String,
    /// The verified end user.
    pub user: Option<UserIdentity>,
}

/// The principals a verified user acts as, most specific first: themselves, then each group.
fn user_tiers(user: &UserIdentity) -> [Vec<Principal>; 2] {
    [
        vec![Principal::User {
            issuer: user.issuer.clone(),
            subject: user.subject.clone(),
        }],
        user.groups.iter().cloned().map(Principal::Group).collect(),
    ]
}

/// Whether `principal` is `user` or one of their groups.
pub(super) fn belongs_to(principal: &Principal, user: &UserIdentity) -> bool {
    match principal {
        Principal::User { issuer, subject } => *issuer == user.issuer && *subject == user.subject,
        Principal::Group(g) => user.groups.contains(g),
        Principal::System | Principal::Agent(_) => false,
    }
}

fn candidate(g: &GrantRecord) -> GrantCandidate {
    GrantCandidate {
        grant_id: g.id.to_string(),
        provider: g.provider.clone(),
        account: g.account_label.clone(),
        principal: g.principal.to_string(),
    }
}

impl Calls {
    /// Verifies a call's `user_token` against the app's identity provider.
    async fn verify_user(&self, cx: &CallContext, token: &str) -> Result<UserIdentity, CallError> {
        let record = idp_configs::get(self.grants.store(), cx.owner.app_id)
            .await
            .map_err(|e| CallError::Grant(GrantError::Store(e)))?
            .ok_or(CallError::IdpNotConfigured)?;
        let config = crate::identity::config::verifier_config_of(record);
        self.verifier
            .verify(&config, token)
            .await
            .map_err(CallError::UserToken)
    }

    /// The providers a call may mean: the one it names (which must be loaded), else every
    /// provider whose declared hosts could hold the URL's host.
    fn providers_for(&self, selector: &GrantSelector, url: &str) -> Result<Vec<String>, CallError> {
        let registry = self.grants.registry();
        if let Some(id) = &selector.provider {
            return match registry.get(id) {
                Some(_) => Ok(vec![id.clone()]),
                None => Err(GrantError::ProviderNotFound { id: id.clone() }.into()),
            };
        }
        let parsed = url::Url::parse(url)
            .map_err(|_| CallError::Invalid("the URL does not parse".into()))?;
        let mut ids: Vec<String> = registry
            .list()
            .iter()
            .filter(|p| crate::egress::host_could_match(&parsed, &p.info().allowed_hosts))
            .map(|p| p.info().id.clone())
            .collect();
        ids.sort();
        if ids.is_empty() {
            return Err(CallError::Invalid(format!(
                "no provider declares the host {}; name the provider or the grant",
                parsed.host_str().unwrap_or_default()
            )));
        }
        Ok(ids)
    }

    /// Finds the grant a call means (see the module doc).
    pub(super) async fn pick(
        &self,
        cx: &CallContext,
        selector: &GrantSelector,
        url: &str,
    ) -> Result<Picked, CallError> {
        let user = match &selector.user_token {
            Some(token) => Some(self.verify_user(cx, token).await?),
            None => None,
        };
        if let Some(id) = &selector.grant_id {
            return Ok(Picked {
                grant_id: id.clone(),
                user,
            });
        }
        let providers = self.providers_for(selector, url)?;
        let now = Timestamp::now();
        let agent = cx.owner.agent_id;
        let delegated_to = agent.map(|a| (a, now));
        let tiers: Vec<(Option<Vec<Principal>>, Option<_>)> = match (&user, agent) {
            (Some(u), _) => user_tiers(u)
                .into_iter()
                .map(|p| (Some(p), delegated_to))
                .collect(),
            (None, None) => vec![(Some(vec![Principal::System]), None)],
            (None, Some(a)) => vec![
                (Some(vec![Principal::Agent(a.to_string())]), None),
                (None, delegated_to),
            ],
        };
        for (principals, delegated_to) in tiers {
            let mut found = grant_repo::candidates(
                self.grants.store(),
                cx.owner.app_id,
                &Candidates {
                    providers: &providers,
                    principals: principals.as_deref(),
                    delegated_to,
                    account: selector.account.as_deref(),
                },
                MAX_CANDIDATES + 1,
            )
            .await
            .map_err(|e: StoreError| CallError::Grant(GrantError::Store(e)))?;
            match found.len() {
                0 => {}
                1 => {
                    return Ok(Picked {
                        grant_id: found[0].id.to_string(),
                        user,
                    });
                }
                n => {
                    found.truncate(MAX_CANDIDATES as usize);
                    return Err(CallError::AmbiguousGrant {
                        more: n > MAX_CANDIDATES as usize,
                        candidates: found.iter().map(candidate).collect(),
                    });
                }
            }
        }
        Err(CallError::NoGrant(format!(
            "no grant of {} {} fits this call{}",
            match (&user, agent) {
                (Some(_), Some(_)) => "this user delegated to this agent",
                (Some(_), None) => "this user or their groups",
                (None, Some(_)) => "this agent or delegated to it",
                (None, None) => "the app itself (system)",
            },
            format_args!("for {}", providers.join(", ")),
            selector
                .account
                .as_ref()
                .map(|a| format!(" with account {a:?}"))
                .unwrap_or_default(),
        )))
    }
}

impl From<IdentityError> for CallError {
    fn from(e: IdentityError) -> Self {
        CallError::UserToken(e)
    }
}
