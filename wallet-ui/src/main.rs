//! The wallet: one page where a person sees which apps and agents can reach which of their
//! accounts, what was done with them, and takes any of it back. Client-side Leptos; every
//! rule about who may see or change what is enforced by the host's `/wallet/api`.

mod api;

use leptos::prelude::*;
use leptos::task::spawn_local;
use tessera_proto::approvals::{Approval, ApprovalStatus};
use tessera_proto::audit::AuditEvent;
use tessera_proto::grants::GrantStatus;
use tessera_proto::wallet::{WalletGrant, WalletSession};

use api::ApiError;

fn main() {
    mount_to_body(App);
}

/// Milliseconds since the epoch of an RFC 3339 time, if it parses.
fn millis(t: &str) -> Option<f64> {
    let v = js_sys::Date::parse(t);
    (!v.is_nan()).then_some(v)
}

/// "in 3 days", "in 5 hours", "in 12 minutes", or "now" for a time in the past.
fn from_now(t: &str) -> String {
    let Some(at) = millis(t) else {
        return t.to_owned();
    };
    // Whole seconds ahead, never negative; a wallet shows days, not the far future.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let secs = ((at - js_sys::Date::now()) / 1000.0).clamp(0.0, 1e12) as u64;
    match secs {
        0 => "now".to_owned(),
        s if s >= 86_400 => format!("in {} days", s / 86_400),
        s if s >= 3600 => format!("in {} hours", s / 3600),
        s => format!("in {} minutes", s.div_ceil(60)),
    }
}

/// The date part of an RFC 3339 time, for people.
fn day(t: &str) -> String {
    t.get(..10).unwrap_or(t).to_owned()
}

/// The query parameter `name` of the page's URL.
fn query_param(name: &str) -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    search
        .trim_start_matches('?')
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.replace('+', " "))
}

fn confirm(text: &str) -> bool {
    web_sys::window()
        .and_then(|w| w.confirm_with_message(text).ok())
        .unwrap_or(false)
}

/// How many grants the page shows at first, and adds at a time.
const PAGE: usize = 50;

/// Says `text` in the page's notice line (nothing when the page has moved on).
fn tell(notice: RwSignal<Option<String>>, text: impl Into<String>) {
    let _ = notice.try_set(Some(text.into()));
}

/// What the page is showing.
#[derive(Clone, Debug, PartialEq)]
enum Page {
    Loading,
    SignedOut,
    SignedIn(WalletSession),
    Failed(String),
}

#[component]
fn App() -> impl IntoView {
    let page = RwSignal::new(Page::Loading);
    spawn_local(async move {
        page.try_set(match api::session().await {
            Ok(s) => Page::SignedIn(s),
            Err(ApiError::SignedOut) => Page::SignedOut,
            Err(e) => Page::Failed(e.message()),
        });
    });
    view! {
        <main>
            {move || match page.get() {
                Page::Loading => view! { <p class="muted" role="status">"Loading your wallet…"</p> }.into_any(),
                Page::SignedOut => view! { <SignIn/> }.into_any(),
                Page::Failed(why) => view! { <p class="error" role="alert">{why}</p> }.into_any(),
                Page::SignedIn(s) => view! { <Wallet session=s page=page/> }.into_any(),
            }}
        </main>
    }
}

#[component]
fn SignIn() -> impl IntoView {
    let error = query_param("login_error");
    view! {
        <header class="bar"><h1>"Tessera wallet"</h1></header>
        <section class="card signin">
            <h2>"See and control what you have shared"</h2>
            <p>"Sign in to see which apps and agents can use your accounts, what they did, and to take any access back."</p>
            {error.map(|e| view! {
                <p class="error" role="alert">{format!("Signing in did not work ({e}). Please try again.")}</p>
            })}
            <a class="button primary" href="/wallet/login?return_to=/wallet/">"Sign in"</a>
        </section>
    }
}

#[component]
fn Wallet(session: WalletSession, page: RwSignal<Page>) -> impl IntoView {
    let csrf = StoredValue::new(session.csrf_token.clone());
    let notice = RwSignal::new(None::<String>);
    let grants = RwSignal::new(None::<Result<Vec<WalletGrant>, ApiError>>);
    let approvals = RwSignal::new(Vec::<Approval>::new());
    // Both lists arrive before either is shown, so nothing moves once the page is drawn.
    let reload = move || {
        spawn_local(async move {
            let g = api::grants().await;
            if let Ok(page) = api::approvals().await {
                // A pending approval is shown with its exact request: fetched before drawing.
                let mut items = Vec::with_capacity(page.items.len());
                for a in page.items {
                    if a.status == ApprovalStatus::Pending {
                        items.push(api::approval(&a.id).await.unwrap_or(a));
                    } else {
                        items.push(a);
                    }
                }
                approvals.try_set(items);
            }
            grants.try_set(Some(g.map(|p| p.items)));
        });
    };
    reload();
    let who = session
        .name
        .clone()
        .or(session.email.clone())
        .unwrap_or_else(|| session.subject.clone());
    let sign_out = move |_| {
        spawn_local(async move {
            let _ = api::logout(&csrf.try_get_value().unwrap_or_default()).await;
            page.try_set(Page::SignedOut);
        });
    };
    view! {
        <header class="bar">
            <h1>"Tessera wallet"</h1>
            <span class="who">{who}</span>
            <button class="button" on:click=sign_out>"Sign out"</button>
        </header>
        {move || notice.get().map(|n| view! { <p class="notice" role="status">{n}</p> })}
        {move || match grants.get() {
            None => view! { <p class="muted" role="status">"Loading your accounts…"</p> }.into_any(),
            Some(result) => view! {
                <Approvals approvals=approvals csrf=csrf notice=notice reload=reload/>
                <section aria-labelledby="grants-h">
                    <h2 id="grants-h">"Your connected accounts"</h2>
                    {match result {
                        Err(e) => view! { <p class="error" role="alert">{e.message()}</p> }.into_any(),
                        Ok(list) if list.is_empty() => view! {
                            <p class="empty">"No app can reach any of your accounts. When you connect one, it shows here."</p>
                        }.into_any(),
                        Ok(list) => view! { <GrantList list=list csrf=csrf notice=notice reload=reload/> }.into_any(),
                    }}
                </section>
            }.into_any(),
        }}
    }
}

#[component]
fn GrantList(
    list: Vec<WalletGrant>,
    csrf: StoredValue<String>,
    notice: RwSignal<Option<String>>,
    reload: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    // A long list is shown a page at a time, so 500 grants cost what 50 do until asked for.
    let shown = RwSignal::new(PAGE);
    let total = list.len();
    let all = StoredValue::new(list);
    let groups = move || {
        let mut apps: Vec<(String, Vec<WalletGrant>)> = Vec::new();
        for g in all.with_value(|l| l.iter().take(shown.get()).cloned().collect::<Vec<_>>()) {
            match apps.iter_mut().find(|(name, _)| *name == g.app_name) {
                Some((_, gs)) => gs.push(g),
                None => apps.push((g.app_name.clone(), vec![g])),
            }
        }
        apps
    };
    view! {
        {move || groups()
            .into_iter()
            .map(|(app, gs)| {
                let label = format!("App {app}");
                view! {
                    <section class="app" aria-label=label>
                        <h3>{app.clone()}</h3>
                        {gs.into_iter()
                            .map(|g| view! { <GrantCard g=g csrf=csrf notice=notice reload=reload/> })
                            .collect_view()}
                    </section>
                }
            })
            .collect_view()}
        {move || (shown.get() < total).then(|| {
            let more = (total - shown.get()).min(PAGE);
            view! {
                <p class="more">
                    <button class="button" on:click=move |_| shown.update(|n| *n += PAGE)>
                        {format!("Show {more} more of {}", total - shown.get())}
                    </button>
                </p>
            }
        })}
    }
}

fn status_text(s: GrantStatus, expired: bool) -> (&'static str, &'static str) {
    match s {
        _ if expired => ("Expired", "badge warn"),
        GrantStatus::Active => ("Active", "badge ok"),
        GrantStatus::ReauthRequired => ("Needs reconnecting", "badge warn"),
        GrantStatus::Revoked => ("Revoked", "badge"),
    }
}

#[component]
fn GrantCard(
    g: WalletGrant,
    csrf: StoredValue<String>,
    notice: RwSignal<Option<String>>,
    reload: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let grant = g.grant.clone();
    let id = StoredValue::new(grant.id.clone());
    let expired = grant
        .valid_until
        .as_deref()
        .and_then(millis)
        .is_some_and(|t| t <= js_sys::Date::now());
    let missing = !grant.missing_scopes.is_empty();
    let (status, badge) = if missing && !expired && grant.status == GrantStatus::Active {
        ("Missing permissions", "badge warn")
    } else {
        status_text(grant.status, expired)
    };
    let scopes: Vec<String> = grant
        .scopes
        .iter()
        .map(|s| g.scope_labels.get(s).cloned().unwrap_or_else(|| s.clone()))
        .collect();
    let title = format!("{} · {}", g.provider_name, grant.account_label);
    let aria = title.clone();
    // Providers declare no logo: their initial stands in, so accounts are told apart at a glance.
    let monogram = g
        .provider_name
        .chars()
        .next()
        .map(|c| c.to_uppercase().to_string())
        .unwrap_or_default();
    let confirm_text = format!(
        "Revoke {}'s access to your {} account {}? Its next call will fail.",
        g.app_name, g.provider_name, grant.account_label
    );
    let show_activity = RwSignal::new(false);
    let agents = StoredValue::new(
        g.delegations
            .iter()
            .map(|d| (d.agent_id.clone(), d.agent_name.clone()))
            .collect::<Vec<_>>(),
    );
    let revoke = move |_| {
        if !confirm(&confirm_text) {
            return;
        }
        spawn_local(async move {
            match api::revoke_grant(
                &csrf.try_get_value().unwrap_or_default(),
                &id.try_get_value().unwrap_or_default(),
            )
            .await
            {
                Ok(_) => tell(notice, "Access revoked."),
                Err(e) => tell(notice, e.message()),
            }
            reload();
        });
    };
    let extend = move |_| {
        spawn_local(async move {
            match api::extend_grant(
                &csrf.try_get_value().unwrap_or_default(),
                &id.try_get_value().unwrap_or_default(),
                30 * 86_400,
            )
            .await
            {
                Ok(_) => tell(notice, "Access extended by 30 days."),
                Err(e) => tell(notice, e.message()),
            }
            reload();
        });
    };
    let reconnect = move |_| {
        spawn_local(async move {
            match api::reconnect(
                &csrf.try_get_value().unwrap_or_default(),
                &id.try_get_value().unwrap_or_default(),
            )
            .await
            {
                Ok(r) => {
                    if let Some(w) = web_sys::window() {
                        let _ = w.location().set_href(&r.connect_url);
                    }
                }
                Err(e) => tell(notice, e.message()),
            }
        });
    };
    let needs_reconnect = grant.status == GrantStatus::ReauthRequired || missing;
    let oauth = grant.kind == tessera_proto::grants::GrantKind::Oauth;
    view! {
        <article class="card grant" aria-label=aria>
            <div class="row">
                <span class="monogram" aria-hidden="true">{monogram}</span>
                <h4>{title}</h4>
                <span class=badge>{status}</span>
            </div>
            <dl>
                <dt>"Held for"</dt><dd>"you"</dd>
                <dt>"Connected"</dt><dd>{day(&grant.created_at)}</dd>
                <dt>"Last used"</dt><dd>{grant.last_used_at.as_deref().map_or_else(|| "never".to_owned(), day)}</dd>
                {grant.valid_until.clone().map(|t| view! { <dt>"Access ends"</dt><dd>{format!("{} ({})", day(&t), from_now(&t))}</dd> })}
                {(!scopes.is_empty()).then(|| view! { <dt>"Can"</dt><dd>{scopes.join(", ")}</dd> })}
            </dl>
            {(!g.delegations.is_empty()).then(|| view! {
                <div class="delegations">
                    <h5>"Agents that can use it"</h5>
                    <ul>
                        {g.delegations.iter().map(|d| {
                            let did = StoredValue::new(d.id.clone());
                            let name = d.agent_name.clone();
                            let label = format!("Remove {name}'s access");
                            let remove = move |_| {
                                spawn_local(async move {
                                    match api::revoke_delegation(&csrf.try_get_value().unwrap_or_default(), &did.try_get_value().unwrap_or_default()).await {
                                        Ok(()) => tell(notice, "The agent's access was removed."),
                                        Err(e) => tell(notice, e.message()),
                                    }
                                    reload();
                                });
                            };
                            let extend_label = format!("Let {name} use it 7 more days");
                            let extend = move |_| {
                                spawn_local(async move {
                                    match api::extend_delegation(&csrf.try_get_value().unwrap_or_default(), &did.try_get_value().unwrap_or_default(), 7 * 86_400).await {
                                        Ok(_) => tell(notice, "The agent can use it for 7 more days."),
                                        Err(e) => tell(notice, e.message()),
                                    }
                                    reload();
                                });
                            };
                            let timed = d.expires_at.is_some();
                            view! {
                                <li>
                                    <span>{name.clone()}</span>
                                    {d.expires_at.clone().map(|t| view! { <span class="muted">{format!(" until {} ({})", day(&t), from_now(&t))}</span> })}
                                    {timed.then(|| view! { <button class="button small" aria-label=extend_label on:click=extend>"Extend"</button> })}
                                    <button class="button small" aria-label=label on:click=remove>"Remove"</button>
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                </div>
            })}
            <div class="actions">
                <button class="button" aria-expanded=move || show_activity.get().to_string()
                    on:click=move |_| show_activity.update(|v| *v = !*v)>"Activity"</button>
                {grant.valid_until.is_some().then(|| view! { <button class="button" on:click=extend>"Extend 30 days"</button> })}
                {(needs_reconnect && oauth).then(|| view! { <button class="button" on:click=reconnect>"Reconnect"</button> })}
                <button class="button danger" on:click=revoke>"Revoke"</button>
            </div>
            {move || show_activity.get().then(|| view! { <Activity grant_id=id.try_get_value().unwrap_or_default() agents=agents.get_value()/> })}
        </article>
    }
}

/// The filters of the activity view, as the query string the API takes.
fn activity_query(agent: &str, since: &str, until: &str, before: Option<i64>) -> String {
    use std::fmt::Write as _;
    let mut q = String::new();
    if !agent.is_empty() {
        let _ = write!(q, "&agent={agent}");
    }
    for (name, day) in [("since", since), ("until", until)] {
        if !day.is_empty() {
            let _ = write!(q, "&{name}={day}T00:00:00Z");
        }
    }
    if let Some(b) = before {
        let _ = write!(q, "&before={b}");
    }
    q
}

fn activity_row(e: &AuditEvent) -> impl IntoView + use<> {
    let d = &e.detail;
    let who = e
        .caller
        .clone()
        .or_else(|| d["agent_id"].as_str().map(|a| format!("agent {a}")))
        .unwrap_or_else(|| e.actor_kind.clone());
    let request = format!(
        "{} {}{}",
        d["method"].as_str().unwrap_or(&e.action),
        d["host"].as_str().unwrap_or(""),
        d["path"].as_str().unwrap_or("")
    );
    let outcome = match (e.outcome.as_str(), d["policy"]["decision"].as_str()) {
        ("denied", Some("deny")) => "Denied by policy".to_owned(),
        ("denied", _) => "Denied".to_owned(),
        ("ok", _) => "Done".to_owned(),
        ("pending", _) => "Waiting for approval".to_owned(),
        (_, _) => format!("Error ({})", d["error"].as_str().unwrap_or("unknown")),
    };
    let when = e.at.get(..16).unwrap_or(&e.at).replace('T', " ");
    let why = e.reason.clone().unwrap_or_default();
    view! {
        <tr>
            <td>{when}</td>
            <td>{who}</td>
            <td>{request}</td>
            <td>{why}</td>
            <td>{outcome}</td>
        </tr>
    }
}

#[component]
fn Activity(grant_id: String, agents: Vec<(String, String)>) -> impl IntoView {
    let rows = RwSignal::new(Vec::<AuditEvent>::new());
    let next = RwSignal::new(None::<i64>);
    let state = RwSignal::new(None::<Result<(), ApiError>>);
    let since = RwSignal::new(String::new());
    let until = RwSignal::new(String::new());
    let agent = RwSignal::new(String::new());
    let has_agents = !agents.is_empty();
    let options = agents
        .into_iter()
        .map(|(id, name)| view! { <option value=id>{name}</option> })
        .collect_view();
    let gid = StoredValue::new(grant_id);
    let load = move |more: bool| {
        let before = if more { next.get_untracked() } else { None };
        let q = activity_query(
            &agent.get_untracked(),
            &since.get_untracked(),
            &until.get_untracked(),
            before,
        );
        spawn_local(async move {
            match api::activity(&gid.try_get_value().unwrap_or_default(), &q).await {
                Ok(page) => {
                    next.try_set(page.next_after);
                    if more {
                        rows.try_update(|r| r.extend(page.items));
                    } else {
                        rows.try_set(page.items);
                    }
                    state.try_set(Some(Ok(())));
                }
                Err(e) => {
                    state.try_set(Some(Err(e)));
                }
            }
        });
    };
    load(false);
    let csv = move || {
        format!(
            "/wallet/api/grants/{}/activity?format=csv&limit=1000{}",
            gid.try_get_value().unwrap_or_default(),
            activity_query(&agent.get(), &since.get(), &until.get(), None)
        )
    };
    view! {
        <div class="activity">
            <form class="filters" on:submit=move |ev| { ev.prevent_default(); load(false); }>
                <label>"From " <input type="date" prop:value=since on:input=move |ev| since.set(event_target_value(&ev))/></label>
                <label>"Before " <input type="date" prop:value=until on:input=move |ev| until.set(event_target_value(&ev))/></label>
                {has_agents.then(|| view! {
                    <label>"Agent "
                        <select on:change=move |ev| agent.set(event_target_value(&ev))>
                            <option value="">"Anyone"</option>
                            {options}
                        </select>
                    </label>
                })}
                <button class="button small" type="submit">"Filter"</button>
            </form>
            {move || match state.get() {
                None => view! { <p class="muted" role="status">"Loading activity…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.message()}</p> }.into_any(),
                Some(Ok(())) if rows.with(Vec::is_empty) => view! { <p class="empty">"Nothing was done with this account in this period."</p> }.into_any(),
                Some(Ok(())) => view! {
                    <table>
                        <thead><tr><th>"When"</th><th>"Who"</th><th>"Request"</th><th>"Why"</th><th>"Outcome"</th></tr></thead>
                        <tbody>{move || rows.get().iter().map(activity_row).collect_view()}</tbody>
                    </table>
                }.into_any(),
            }}
            <div class="actions">
                {move || next.get().is_some().then(|| view! { <button class="button small" on:click=move |_| load(true)>"Older"</button> })}
                <a class="button small" href=csv download="activity.csv">"Export CSV"</a>
            </div>
        </div>
    }
}

#[component]
fn Approvals(
    approvals: RwSignal<Vec<Approval>>,
    csrf: StoredValue<String>,
    notice: RwSignal<Option<String>>,
    reload: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let pending = move || {
        approvals
            .get()
            .into_iter()
            .filter(|a| a.status == ApprovalStatus::Pending)
            .collect::<Vec<_>>()
    };
    let decided = move || {
        approvals
            .get()
            .into_iter()
            .filter(|a| a.status != ApprovalStatus::Pending)
            .collect::<Vec<_>>()
    };
    view! {
        {move || {
            let list = pending();
            (!list.is_empty()).then(|| view! {
                <section aria-labelledby="approvals-h" class="approvals">
                    <h2 id="approvals-h">"Waiting for your approval"</h2>
                    {list.into_iter().map(|a| view! { <ApprovalCard a=a csrf=csrf notice=notice reload=reload/> }).collect_view()}
                </section>
            })
        }}
        {move || {
            let list = decided();
            (!list.is_empty()).then(|| view! {
                <details class="history">
                    <summary>{format!("Decided requests ({})", list.len())}</summary>
                    <ul>
                        {list.into_iter().map(|a| {
                            let line = format!(" {} {} · {}", a.method, a.url, day(a.decided_at.as_deref().unwrap_or(&a.created_at)));
                            view! { <li><span class="badge">{a.status.as_str()}</span>{line}</li> }
                        }).collect_view()}
                    </ul>
                </details>
            })
        }}
    }
}

#[component]
fn ApprovalCard(
    a: Approval,
    csrf: StoredValue<String>,
    notice: RwSignal<Option<String>>,
    reload: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let id = StoredValue::new(a.id.clone());
    let sha = StoredValue::new(a.request_sha256.clone());
    let request = a.request.clone();
    let decide = move |approve: bool| {
        let sha = sha.try_get_value().unwrap_or_default();
        spawn_local(async move {
            match api::decide(
                &csrf.try_get_value().unwrap_or_default(),
                &id.try_get_value().unwrap_or_default(),
                approve,
                &sha,
            )
            .await
            {
                Ok(done) => tell(
                    notice,
                    if approve {
                        format!("Approved: the request was sent ({}).", done.status.as_str())
                    } else {
                        "Denied: nothing was sent.".to_owned()
                    },
                ),
                Err(e) => tell(notice, e.message()),
            }
            reload();
        });
    };
    let asker = format!(
        "{}{}",
        a.caller
            .clone()
            .unwrap_or_else(|| format!("key {}", a.key_id)),
        a.agent_id
            .as_ref()
            .map(|g| format!(" (agent {g})"))
            .unwrap_or_default()
    );
    view! {
        <article class="card approval" aria-label=format!("Approval {}", a.id)>
            <div class="row">
                <h4>{format!("{} {}", a.method, a.url)}</h4>
                <span class="badge warn">{format!("decide {}", from_now(&a.expires_at))}</span>
            </div>
            <p>{format!(
                "{} asks, as {asker}, to use your {} account.",
                a.app_name.clone().unwrap_or_else(|| "An app".to_owned()),
                a.provider
            )}</p>
            {a.reason.clone().map(|r| view! { <p class="muted">{format!("Why: {r}")}</p> })}
            {request.map(|r| view! {
                <details open>
                    <summary>"The exact request"</summary>
                    <pre class="request">{format!("{} {}\n{}\n\n{}",
                        r.method, r.url,
                        r.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect::<Vec<_>>().join("\n"),
                        r.body_text.clone().unwrap_or_else(|| format!("({} bytes)", r.body_bytes)))}</pre>
                </details>
            })}
            <div class="actions">
                <button class="button primary" on:click=move |_| decide(true)>"Approve"</button>
                <button class="button danger" on:click=move |_| decide(false)>"Deny"</button>
            </div>
        </article>
    }
}
