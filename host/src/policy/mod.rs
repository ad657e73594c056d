//! Policy: the operator's restrictions on calls, decided by Cedar on every retrieve and proxy
//! call after identity and grant resolution and before the credential is opened.
//!
//! Owns: the published Cedar schema ([`SCHEMA`]); the app's rules as a service (create, list,
//! show, update, delete — checked, compiled, audited as `policy.rule.*` in the change's own
//! transaction); the per-app compiled policy set, cached for [`CACHE_TTL`] in each process
//! (a change made here takes effect at once on this instance, within that time on others);
//! and the decision. The set is one base `permit` (every call that reached policy already
//! passed the base checks: the caller owns or is delegated the grant, holds the scope, the
//! grant is valid) plus one `forbid` per rule, so rules can only restrict.
//!
//! Fail closed: a call is allowed only when Cedar allows it *and* no policy errored while
//! being evaluated; an erroring policy denies, named; a request Cedar cannot even build, or
//! rules that cannot be loaded, deny the call too.
//!
//! Must never: let a rule widen access (custom rules must be `forbid`), or allow a call
//! whose policies could not all be evaluated.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, Policy, PolicyId, PolicySet, Request,
    Schema,
};
use serde_json::json;
use tessera_proto::policy::{PolicyRule, RuleKind, RuleRequest};

use crate::audit::{self, Action, AuditEntry, AuditError, Outcome};
use crate::grants::Change;
use crate::store::grants::GrantRecord;
use crate::store::policy_rules::{self as repo, RuleRecord};
use crate::store::{AgentId, AppId, Store, StoreError, Timestamp};

pub mod rules;

use rules::{Layer, Limit, Per, Window};

/// The Cedar schema calls are evaluated against and custom rules validated against.
pub const SCHEMA: &str = include_str!("schema.cedarschema");

/// How long a process uses an app's compiled rules before reading them again.
pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// The id of the base `permit`.
const BASE_ID: &str = "tessera-base";

/// Why a policy operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The rule is malformed (the message says how).
    #[error("{0}")]
    Invalid(String),
    /// No rule with this id or name in the app.
    #[error("no policy rule {0:?} in this app")]
    NotFound(String),
    /// The app already has a rule of this name.
    #[error("this app already has a policy rule named {0:?}")]
    Duplicate(String),
    /// An agent key (or an app key acting as an agent) asked to read or change rules.
    #[error("policy rules are managed with an app key (or `tessera policy` by the operator)")]
    AppKeyRequired,
    /// The change could not be audited, so it was not made.
    #[error("the change was not made: its audit row could not be written")]
    AuditUnavailable(#[source] AuditError),
    /// The database failed.
    #[error("the database failed")]
    Store(#[from] StoreError),
}

impl PolicyError {
    /// The stable machine code of the API problem.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_request",
            Self::NotFound(_) => "policy_rule_not_found",
            Self::Duplicate(_) => "policy_rule_conflict",
            Self::AppKeyRequired => "app_key_required",
            Self::AuditUnavailable(_) => "audit_unavailable",
            Self::Store(_) => "internal_error",
        }
    }

    /// The HTTP status of the API problem.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid(_) => 400,
            Self::NotFound(_) => 404,
            Self::Duplicate(_) => 409,
            Self::AppKeyRequired => 403,
            Self::Store(_) => 500,
            Self::AuditUnavailable(_) => 503,
        }
    }
}

/// Who makes a call, as a policy sees it.
#[derive(Clone, Debug)]
pub enum Actor {
    /// An agent (its key, or an app key acting as it).
    Agent(AgentId),
    /// An end user, by their verified token.
    User {
        /// `iss`.
        issuer: String,
        /// `sub`.
        subject: String,
    },
    /// The app itself.
    System(AppId),
}

/// Which call mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallAction {
    /// `POST /v1/retrieve`.
    Retrieve,
    /// `POST /v1/proxy`.
    Proxy,
}

/// Everything a decision looks at.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    /// The call mode.
    pub action: CallAction,
    /// Who makes it.
    pub actor: Actor,
    /// The agent making it, if any (also when a user token is present).
    pub agent: Option<AgentId>,
    /// The end user's groups (with a user token).
    pub groups: &'a [String],
    /// The grant it uses.
    pub grant: &'a GrantRecord,
    /// The provider request.
    pub method: &'a str,
    /// The provider request's URL.
    pub url: &'a str,
    /// The calling client's address.
    pub client_ip: IpAddr,
    /// The SDK's caller name.
    pub caller: Option<&'a str>,
    /// The call's reason.
    pub reason: Option<&'a str>,
    /// The call's context map.
    pub tags: &'a BTreeMap<String, String>,
    /// When.
    pub now: Timestamp,
}

/// A decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The call may go on; `rules` rules were evaluated.
    Allow {
        /// How many rules applied to the app.
        rules: usize,
    },
    /// A rule refused the call (or could not be evaluated).
    Deny {
        /// The deciding rule's id.
        rule_id: String,
        /// Its name.
        rule_name: String,
        /// Why, for people (which rule; an evaluation error says so).
        why: String,
        /// For a rate limit: seconds until its window ends.
        retry_after: Option<u64>,
    },
    /// The call may go on only after a person approves it: a require-approval rule matched
    /// (a retrieve call is refused instead).
    Hold {
        /// How many rules applied to the app.
        rules: usize,
        /// The deciding rule's id.
        rule_id: String,
        /// Its name.
        rule_name: String,
        /// How long a person has to decide, in seconds.
        ttl_secs: u32,
    },
}

/// One app's rules, compiled.
struct Compiled {
    set: PolicySet,
    /// The require-approval rules (a `forbid` here holds the call for a person) and each
    /// one's decision deadline; empty when the app has none.
    approvals: PolicySet,
    approval_ttl: HashMap<String, u32>,
    names: HashMap<String, String>,
    windows: Vec<(String, Window)>,
    limits: Vec<(String, Layer, Limit)>,
    count: usize,
}

/// What the host worked out before asking Cedar: the rate-limit rules a call is over, and
/// when the first of their windows ends.
#[derive(Default)]
struct Counted {
    over: Vec<String>,
    retry_after: HashMap<String, u64>,
}

/// Whether a rule of `layer` covers the call.
fn covers(layer: &Layer, f: &Facts<'_>) -> bool {
    match layer {
        Layer::App => true,
        Layer::Provider(p) => f.grant.provider == *p,
        Layer::Grant(g) => f.grant.id.to_string() == *g,
        Layer::Agent(a) => f.agent.is_some_and(|agent| agent.to_string() == *a),
    }
}

/// Each app's compiled rules and when they were read.
type Cache = Arc<Mutex<HashMap<AppId, (Instant, Arc<Compiled>)>>>;

/// The policy service. Cheap to clone.
#[derive(Clone)]
pub struct Policies {
    store: Store,
    /// The parsed [`SCHEMA`]; an error (a build defect) makes every decision deny.
    schema: Result<Arc<Schema>, String>,
    cache: Cache,
    last_purge: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies").finish_non_exhaustive()
    }
}

/// The schema, parsed (it is part of the binary, so a failure is a build defect, which a
/// unit test catches).
pub fn schema() -> Result<Schema, String> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(schema, _)| schema)
        .map_err(|e| format!("the built-in Cedar schema does not parse: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Policies {
    /// The service over `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            schema: schema().map(Arc::new),
            cache: Arc::default(),
            last_purge: Arc::default(),
        }
    }

    /// Decides a call. A store failure is an error (the caller refuses the call).
    pub async fn decide(&self, app_id: AppId, facts: &Facts<'_>) -> Result<Verdict, StoreError> {
        let compiled = self.compiled(app_id).await?;
        if compiled.count == 0 {
            return Ok(Verdict::Allow { rules: 0 });
        }
        let schema = match &self.schema {
            Ok(schema) => schema,
            Err(e) => {
                tracing::error!(error = %e, "no policy schema; every call with rules is refused");
                return Ok(Verdict::Deny {
                    rule_id: BASE_ID.into(),
                    rule_name: BASE_ID.into(),
                    why: "the host cannot evaluate policy rules".into(),
                    retry_after: None,
                });
            }
        };
        let counted = self.count(&compiled, facts).await?;
        Ok(evaluate(&compiled, schema, facts, &counted))
    }

    /// Counts the call under every rate-limit rule that covers it (in the database, so
    /// the limit holds across host instances), and purges past windows once a minute.
    async fn count(&self, compiled: &Compiled, f: &Facts<'_>) -> Result<Counted, StoreError> {
        let mut counted = Counted::default();
        let now = f.now.unix_millis();
        for (id, layer, limit) in &compiled.limits {
            if !covers(layer, f) {
                continue;
            }
            let subject = match limit.per {
                Per::Grant => f.grant.id.to_string(),
                Per::Agent => match f.agent {
                    Some(a) => a.to_string(),
                    None => continue,
                },
            };
            let start = now - now.rem_euclid(limit.window_ms);
            let calls = repo::count_call(&self.store, id, &subject, start).await?;
            if calls > i64::from(limit.limit) {
                counted.over.push(id.clone());
                let left = u64::try_from(start + limit.window_ms - now).unwrap_or(0);
                counted
                    .retry_after
                    .insert(id.clone(), left.div_ceil(1000).max(1));
            }
        }
        let due = {
            let mut last = lock(&self.last_purge);
            let due = last.is_none_or(|at| at.elapsed() >= Duration::from_mins(1));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due && !compiled.limits.is_empty() {
            // Windows are at most a day long.
            if let Err(e) = repo::purge_counters(&self.store, now - 86_400_000).await {
                tracing::warn!(error = %e, "cannot purge old rate-limit counters");
            }
        }
        Ok(counted)
    }

    async fn compiled(&self, app_id: AppId) -> Result<Arc<Compiled>, StoreError> {
        if let Some((at, c)) = lock(&self.cache).get(&app_id)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(c.clone());
        }
        let rows = repo::list(&self.store, app_id).await?;
        let compiled = Arc::new(compile_set(&rows));
        lock(&self.cache).insert(app_id, (Instant::now(), compiled.clone()));
        Ok(compiled)
    }

    fn forget(&self, app_id: AppId) {
        lock(&self.cache).remove(&app_id);
    }

    /// Creates a rule in app `app_id`, audited as `policy.rule.create`.
    pub async fn create(
        &self,
        app_id: AppId,
        change: &Change,
        request: &RuleRequest,
    ) -> Result<PolicyRule, PolicyError> {
        let now = Timestamp::now();
        let record = self.record_of(app_id, uuid::Uuid::now_v7().to_string(), request, now)?;
        let mut tx = self.store.begin().await?;
        repo::insert(&mut tx, &record).await.map_err(|e| match e {
            StoreError::Conflict { .. } => PolicyError::Duplicate(request.name.clone()),
            e => e.into(),
        })?;
        audit::append(&mut tx, &[entry(Action::PolicyRuleCreate, change, &record)])
            .await
            .map_err(PolicyError::AuditUnavailable)?;
        tx.commit().await?;
        self.forget(app_id);
        to_wire(&record)
    }

    /// Replaces rule `id_or_name` of app `app_id`, audited as `policy.rule.update`.
    pub async fn update(
        &self,
        app_id: AppId,
        change: &Change,
        id_or_name: &str,
        request: &RuleRequest,
    ) -> Result<PolicyRule, PolicyError> {
        let old = self.find(app_id, id_or_name).await?;
        let mut record = self.record_of(app_id, old.id.clone(), request, Timestamp::now())?;
        record.created_at = old.created_at;
        let mut tx = self.store.begin().await?;
        let found = repo::update(&mut tx, &record).await.map_err(|e| match e {
            StoreError::Conflict { .. } => PolicyError::Duplicate(request.name.clone()),
            e => e.into(),
        })?;
        if !found {
            return Err(PolicyError::NotFound(id_or_name.to_owned()));
        }
        audit::append(&mut tx, &[entry(Action::PolicyRuleUpdate, change, &record)])
            .await
            .map_err(PolicyError::AuditUnavailable)?;
        tx.commit().await?;
        self.forget(app_id);
        to_wire(&record)
    }

    /// Deletes rule `id_or_name` of app `app_id`, audited as `policy.rule.delete`.
    pub async fn delete(
        &self,
        app_id: AppId,
        change: &Change,
        id_or_name: &str,
    ) -> Result<PolicyRule, PolicyError> {
        let old = self.find(app_id, id_or_name).await?;
        let mut tx = self.store.begin().await?;
        if !repo::delete(&mut tx, app_id, &old.id).await? {
            return Err(PolicyError::NotFound(id_or_name.to_owned()));
        }
        audit::append(&mut tx, &[entry(Action::PolicyRuleDelete, change, &old)])
            .await
            .map_err(PolicyError::AuditUnavailable)?;
        tx.commit().await?;
        self.forget(app_id);
        to_wire(&old)
    }

    /// Rule `id_or_name` of app `app_id`.
    pub async fn get(&self, app_id: AppId, id_or_name: &str) -> Result<PolicyRule, PolicyError> {
        to_wire(&self.find(app_id, id_or_name).await?)
    }

    /// Every rule of app `app_id`, by name.
    pub async fn list(&self, app_id: AppId) -> Result<Vec<PolicyRule>, PolicyError> {
        repo::list(&self.store, app_id)
            .await?
            .iter()
            .map(to_wire)
            .collect()
    }

    async fn find(&self, app_id: AppId, id_or_name: &str) -> Result<RuleRecord, PolicyError> {
        let by_id = match id_or_name.parse::<uuid::Uuid>() {
            Ok(id) => repo::get(&self.store, app_id, &id.to_string()).await?,
            Err(_) => None,
        };
        let found = match by_id {
            Some(r) => Some(r),
            None => repo::get_by_name(&self.store, app_id, id_or_name).await?,
        };
        found.ok_or_else(|| PolicyError::NotFound(id_or_name.to_owned()))
    }

    /// Checks and compiles `request` into the row to store.
    fn record_of(
        &self,
        app_id: AppId,
        id: String,
        request: &RuleRequest,
        now: Timestamp,
    ) -> Result<RuleRecord, PolicyError> {
        crate::apps::check_name("policy rule", &request.name)
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        let layer = Layer::parse(&request.applies_to)?;
        let schema = self
            .schema
            .as_ref()
            .map_err(|e| PolicyError::Invalid(e.clone()))?;
        let (cedar, _) = rules::compile(&id, &layer, &request.rule, schema)?;
        let (layer_name, target) = layer.parts();
        let settings = serde_json::to_string(&request.rule)
            .map_err(|e| PolicyError::Invalid(format!("the rule does not serialise: {e}")))?;
        Ok(RuleRecord {
            id,
            app_id,
            name: request.name.clone(),
            layer: layer_name.to_owned(),
            target: target.to_owned(),
            kind: request.rule.name().to_owned(),
            settings,
            cedar,
            created_at: now,
            updated_at: now,
        })
    }
}

/// The base `permit` plus each stored rule. A stored rule that no longer parses (it was
/// checked when stored, so only a tampered database gets here) is replaced by a `forbid` of
/// everything under its id: fail closed, named.
fn compile_set(rows: &[RuleRecord]) -> Compiled {
    let mut set = PolicySet::new();
    let base = Policy::parse(
        Some(PolicyId::new(BASE_ID)),
        "permit (principal, action, resource);",
    );
    if let Ok(base) = base {
        let _ = set.add(base);
    }
    let mut approvals = PolicySet::new();
    let mut approval_ttl = HashMap::new();
    let mut names = HashMap::new();
    let mut windows = Vec::new();
    let mut limits = Vec::new();
    for row in rows {
        names.insert(row.id.clone(), row.name.clone());
        let parsed = Policy::parse(Some(PolicyId::new(&row.id)), &row.cedar).ok();
        let policy = parsed.or_else(|| {
            tracing::error!(rule = %row.id, "a stored policy rule does not parse; it denies every call");
            Policy::parse(
                Some(PolicyId::new(&row.id)),
                "forbid (principal, action, resource);",
            )
            .ok()
        });
        if row.kind == "require_approval" {
            // A tampered row holds every call of the app for a person: still closed.
            let ttl = match serde_json::from_str::<RuleKind>(&row.settings) {
                Ok(RuleKind::RequireApproval { ttl_secs, .. }) => ttl_secs,
                _ => None,
            };
            approval_ttl.insert(
                row.id.clone(),
                ttl.unwrap_or(rules::DEFAULT_APPROVAL_TTL_SECS),
            );
            if let Some(p) = policy {
                let _ = approvals.add(p);
            }
            continue;
        }
        if let Some(p) = policy {
            let _ = set.add(p);
        }
        if row.kind == "time_window"
            && let Ok(RuleKind::TimeWindow {
                days,
                start,
                end,
                time_zone,
            }) = serde_json::from_str::<RuleKind>(&row.settings)
            && let Ok(w) = Window::of(&days, &start, &end, &time_zone)
        {
            windows.push((row.id.clone(), w));
        }
        if row.kind == "rate_limit"
            && let Ok(RuleKind::RateLimit {
                limit,
                window_secs,
                per,
            }) = serde_json::from_str::<RuleKind>(&row.settings)
            && let Ok(l) = Limit::of(limit, window_secs, &per)
            && let Some(layer) = Layer::from_parts(&row.layer, &row.target)
        {
            limits.push((row.id.clone(), layer, l));
        }
    }
    if !approval_ttl.is_empty()
        && let Ok(base) = Policy::parse(
            Some(PolicyId::new(BASE_ID)),
            "permit (principal, action, resource);",
        )
    {
        let _ = approvals.add(base);
    }
    Compiled {
        set,
        approvals,
        approval_ttl,
        names,
        windows,
        limits,
        count: rows.len(),
    }
}

fn uid(kind: &str, id: &str) -> serde_json::Value {
    json!({ "type": kind, "id": id })
}

/// The Cedar request and entities of a call.
fn request_of(
    compiled: &Compiled,
    schema: &Schema,
    f: &Facts<'_>,
    counted: &Counted,
) -> Result<(Request, Entities), String> {
    let (principal, mut entities) = match &f.actor {
        Actor::Agent(a) => (
            uid("Agent", &a.to_string()),
            vec![json!({"uid": uid("Agent", &a.to_string()), "attrs": {}, "parents": []})],
        ),
        Actor::System(app) => (
            uid("System", &app.to_string()),
            vec![json!({"uid": uid("System", &app.to_string()), "attrs": {}, "parents": []})],
        ),
        Actor::User { issuer, subject } => {
            let id = format!("{issuer}:{subject}");
            let mut all = vec![json!({
                "uid": uid("User", &id),
                "attrs": { "issuer": issuer, "subject": subject },
                "parents": f.groups.iter().map(|g| uid("Group", g)).collect::<Vec<_>>(),
            })];
            all.extend(
                f.groups
                    .iter()
                    .map(|g| json!({"uid": uid("Group", g), "attrs": {}, "parents": []})),
            );
            (uid("User", &id), all)
        }
    };
    let g = f.grant;
    entities.push(json!({"uid": uid("Provider", &g.provider), "attrs": {}, "parents": []}));
    entities.push(json!({
        "uid": uid("Grant", &g.id.to_string()),
        "attrs": {
            "provider": g.provider,
            "owner": g.principal.to_string(),
            "account": g.account_label,
            "kind": g.kind.as_str(),
        },
        "parents": [uid("Provider", &g.provider)],
    }));
    let entities = Entities::from_json_value(serde_json::Value::Array(entities), Some(schema))
        .map_err(|e| format!("entities: {e}"))?;
    let url = url::Url::parse(f.url).map_err(|_| "the URL does not parse".to_owned())?;
    let millis = f.now.unix_millis();
    let secs = millis.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let context = json!({
        "method": f.method,
        "host": url.host_str().unwrap_or_default(),
        "path": url.path(),
        "time": {
            // 1970-01-01 was a Thursday (ISO 4).
            "weekday": (days + 3).rem_euclid(7) + 1,
            "minutes": secs.rem_euclid(86_400) / 60,
            "unix": secs,
        },
        "client_ip": { "__extn": { "fn": "ip", "arg": f.client_ip.to_string() } },
        "caller": f.caller.unwrap_or_default(),
        "reason": f.reason.unwrap_or_default(),
        "tags": f.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "groups": f.groups,
        "agent": f.agent.map(|a| a.to_string()).unwrap_or_default(),
        "open_windows": compiled
            .windows
            .iter()
            .filter(|(_, w)| w.is_open(millis))
            .map(|(id, _)| id.clone())
            .collect::<Vec<_>>(),
        "over_limit": counted.over,
    });
    let action: EntityUid = format!(
        "Action::\"{}\"",
        match f.action {
            CallAction::Retrieve => "retrieve",
            CallAction::Proxy => "proxy",
        }
    )
    .parse()
    .map_err(|e| format!("action: {e}"))?;
    let context = Context::from_json_value(context, Some((schema, &action)))
        .map_err(|e| format!("context: {e}"))?;
    let principal = EntityUid::from_json(principal).map_err(|e| format!("principal: {e}"))?;
    let resource = EntityUid::from_json(uid("Grant", &g.id.to_string()))
        .map_err(|e| format!("resource: {e}"))?;
    let request = Request::new(principal, action, resource, context, Some(schema))
        .map_err(|e| format!("request: {e}"))?;
    Ok((request, entities))
}

/// The decision for a call against an app's compiled rules (see the module doc: fail
/// closed).
fn evaluate(compiled: &Compiled, schema: &Schema, facts: &Facts<'_>, counted: &Counted) -> Verdict {
    let name_of = |id: &str| {
        compiled
            .names
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_owned())
    };
    let (request, entities) = match request_of(compiled, schema, facts, counted) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "a call could not be put to policy; denied");
            return Verdict::Deny {
                rule_id: BASE_ID.into(),
                rule_name: BASE_ID.into(),
                why: "the call could not be evaluated against the app's policy rules".into(),
                retry_after: None,
            };
        }
    };
    let response = Authorizer::new().is_authorized(&request, &compiled.set, &entities);
    if let Some(e) = response.diagnostics().errors().next() {
        let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = e;
        let id = e.policy_id().to_string();
        return Verdict::Deny {
            why: format!(
                "policy rule {:?} could not be evaluated, so the call is refused",
                name_of(&id)
            ),
            rule_name: name_of(&id),
            rule_id: id,
            retry_after: None,
        };
    }
    match response.decision() {
        Decision::Allow if compiled.approval_ttl.is_empty() => Verdict::Allow {
            rules: compiled.count,
        },
        Decision::Allow => hold_or_allow(compiled, &request, &entities),
        Decision::Deny => {
            let id = response
                .diagnostics()
                .reason()
                .map(ToString::to_string)
                .find(|id| id != BASE_ID)
                .unwrap_or_else(|| BASE_ID.to_owned());
            let retry_after = counted.retry_after.get(&id).copied();
            Verdict::Deny {
                why: match retry_after {
                    Some(s) => format!(
                        "policy rule {:?} limits the rate of these calls; retry in {s} s",
                        name_of(&id)
                    ),
                    None => format!("policy rule {:?} refuses this call", name_of(&id)),
                },
                rule_name: name_of(&id),
                rule_id: id,
                retry_after,
            }
        }
    }
}

/// After the rules allowed a call: whether a require-approval rule holds it for a person.
/// An evaluation error holds it too (closed: nothing is sent without a person).
fn hold_or_allow(compiled: &Compiled, request: &Request, entities: &Entities) -> Verdict {
    let response = Authorizer::new().is_authorized(request, &compiled.approvals, entities);
    let errored = response
        .diagnostics()
        .errors()
        .map(|cedar_policy::AuthorizationError::PolicyEvaluationError(e)| e.policy_id().to_string())
        .next();
    let deciding = errored.or_else(|| match response.decision() {
        Decision::Allow => None,
        Decision::Deny => response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .find(|id| id != BASE_ID),
    });
    match deciding {
        None => Verdict::Allow {
            rules: compiled.count,
        },
        Some(id) => Verdict::Hold {
            rules: compiled.count,
            rule_name: compiled
                .names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| id.clone()),
            ttl_secs: compiled
                .approval_ttl
                .get(&id)
                .copied()
                .unwrap_or(rules::DEFAULT_APPROVAL_TTL_SECS),
            rule_id: id,
        },
    }
}

/// The audit row of a rule change.
fn entry(action: Action, change: &Change, r: &RuleRecord) -> AuditEntry {
    AuditEntry {
        at: Timestamp::now(),
        app_id: Some(r.app_id),
        key_id: change.key_id.clone(),
        caller: change.caller.clone(),
        request_id: change.request_id.clone(),
        reason: change.reason.clone(),
        detail: change.annotate(json!({
            "via": change.origin.via.as_str(),
            "rule_id": r.id,
            "name": r.name,
            "kind": r.kind,
            "applies_to": if r.layer == "app" { "app".to_owned() } else { format!("{}:{}", r.layer, r.target) },
            "cedar": r.cedar,
        })),
        ..AuditEntry::new(action, change.origin.actor.clone(), Outcome::Ok)
    }
}

/// The wire form of a stored rule.
fn to_wire(r: &RuleRecord) -> Result<PolicyRule, PolicyError> {
    let rule: RuleKind = serde_json::from_str(&r.settings).map_err(|_| {
        PolicyError::Store(StoreError::Corrupt {
            table: "policy_rules",
            detail: format!("rule {} has unreadable settings", r.id),
        })
    })?;
    Ok(PolicyRule {
        id: r.id.clone(),
        name: r.name.clone(),
        applies_to: if r.layer == "app" {
            "app".to_owned()
        } else {
            format!("{}:{}", r.layer, r.target)
        },
        rule,
        cedar: r.cedar.clone(),
        created_at: r.created_at.to_rfc3339(),
        updated_at: r.updated_at.to_rfc3339(),
    })
}

#[cfg(test)]
mod tests;
