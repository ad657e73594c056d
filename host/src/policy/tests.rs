use std::collections::BTreeMap;

use tessera_proto::grants::{GrantKind, GrantStatus, Principal};

use super::*;
use crate::store::{CredentialId, GrantId};

const AT: i64 = 1_764_581_400_000; // 2025-12-01T09:30:00Z, a Monday (10:30 in Paris)

fn grant(provider: &str) -> GrantRecord {
    GrantRecord {
        id: GrantId::new(),
        app_id: AppId::new(),
        provider: provider.into(),
        principal: Principal::System,
        credential_id: CredentialId::new(),
        kind: GrantKind::ManagedSecret,
        account_label: "acct".into(),
        scopes: Vec::new(),
        status: GrantStatus::Active,
        created_at: Timestamp::from_unix_millis(0),
        updated_at: Timestamp::from_unix_millis(0),
        last_used_at: None,
        revoked_at: None,
        valid_until: None,
    }
}

/// One rule as stored.
fn rule(name: &str, applies_to: &str, kind: &RuleKind) -> RuleRecord {
    let id = uuid::Uuid::now_v7().to_string();
    let layer = Layer::parse(applies_to).unwrap();
    let (cedar, _) = rules::compile(&id, &layer, kind, &schema().unwrap())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let (l, t) = layer.parts();
    RuleRecord {
        id,
        app_id: AppId::new(),
        name: name.into(),
        layer: l.into(),
        target: t.into(),
        kind: kind.name().into(),
        settings: serde_json::to_string(kind).unwrap(),
        cedar,
        created_at: Timestamp::from_unix_millis(0),
        updated_at: Timestamp::from_unix_millis(0),
    }
}

struct Call {
    actor: Actor,
    agent: Option<AgentId>,
    groups: Vec<String>,
    grant: GrantRecord,
    method: &'static str,
    url: &'static str,
    action: CallAction,
    ip: &'static str,
    at: i64,
}

impl Call {
    fn system() -> Self {
        Self {
            actor: Actor::System(AppId::new()),
            agent: None,
            groups: Vec::new(),
            grant: grant("stripe"),
            method: "GET",
            url: "https://api.stripe.com/v1/customers",
            action: CallAction::Proxy,
            ip: "203.0.113.9",
            at: AT,
        }
    }

    fn agent(id: AgentId) -> Self {
        Self {
            actor: Actor::Agent(id),
            agent: Some(id),
            ..Self::system()
        }
    }

    fn decide(&self, rules: &[RuleRecord]) -> Verdict {
        let tags = BTreeMap::from([("tool".to_owned(), "sync".to_owned())]);
        let facts = Facts {
            action: self.action,
            actor: self.actor.clone(),
            agent: self.agent,
            groups: &self.groups,
            grant: &self.grant,
            method: self.method,
            url: self.url,
            client_ip: self.ip.parse().unwrap(),
            caller: Some("bot"),
            reason: None,
            tags: &tags,
            now: Timestamp::from_unix_millis(self.at),
        };
        evaluate(
            &compile_set(rules),
            &schema().unwrap(),
            &facts,
            &Counted::default(),
        )
    }
}

fn denied_by(v: &Verdict) -> Option<&str> {
    match v {
        Verdict::Deny { rule_name, .. } => Some(rule_name),
        Verdict::Allow { .. } | Verdict::Hold { .. } => None,
    }
}

#[test]
fn no_rule_allows_and_each_kind_restricts_only_its_calls() {
    assert_eq!(Call::system().decide(&[]), Verdict::Allow { rules: 0 });
    let bot = AgentId::new();
    let no_delete = rule(
        "agents-no-delete",
        &format!("agent:{bot}"),
        &RuleKind::Methods {
            deny: vec!["delete".into()],
        },
    );
    let rules = [no_delete];
    assert_eq!(Call::agent(bot).decide(&rules), Verdict::Allow { rules: 1 });
    let delete = Call {
        method: "DELETE",
        ..Call::agent(bot)
    };
    assert_eq!(denied_by(&delete.decide(&rules)), Some("agents-no-delete"));
    let other_agent = Call {
        method: "DELETE",
        ..Call::agent(AgentId::new())
    };
    assert_eq!(
        denied_by(&other_agent.decide(&rules)),
        None,
        "another layer"
    );
    let app = Call {
        method: "DELETE",
        ..Call::system()
    };
    assert_eq!(denied_by(&app.decide(&rules)), None);
}

#[test]
fn a_custom_forbid_applies_and_permits_or_misfits_are_refused() {
    let custom = rule(
        "no-agent-deletes",
        "app",
        &RuleKind::Cedar {
            policy: "forbid (principal is Agent, action, resource)\n  when { context.method == \"DELETE\" };".into(),
        },
    );
    let bot = AgentId::new();
    let delete = Call {
        method: "DELETE",
        ..Call::agent(bot)
    };
    assert_eq!(
        denied_by(&delete.decide(std::slice::from_ref(&custom))),
        Some("no-agent-deletes")
    );
    assert_eq!(
        denied_by(&Call::agent(bot).decide(std::slice::from_ref(&custom))),
        None
    );
    let system_delete = Call {
        method: "DELETE",
        ..Call::system()
    };
    assert_eq!(denied_by(&system_delete.decide(&[custom])), None);

    let schema = schema().unwrap();
    let id = "0190aa00-0000-7000-8000-000000000001";
    for (policy, why) in [
        ("permit (principal, action, resource);", "forbid"),
        (
            "forbid (principal, action, resource) when { context.nope == 1 };",
            "schema",
        ),
        ("forbid (principal, action, resource", "parse"),
        (
            "@id(\"x\") forbid (principal, action, resource);",
            "annotations",
        ),
    ] {
        let e = rules::compile(
            id,
            &Layer::App,
            &RuleKind::Cedar {
                policy: policy.into(),
            },
            &schema,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(why), "{policy}: {e}");
    }
}

#[test]
fn ip_allow_lists_match_v4_and_v6_ranges_and_single_addresses() {
    let office = rule(
        "office",
        "provider:stripe",
        &RuleKind::IpAllow {
            ranges: vec![
                "203.0.113.0/24".into(),
                "2001:db8::/32".into(),
                "198.51.100.7".into(),
            ],
        },
    );
    let rules = [office];
    for (ip, allowed) in [
        ("203.0.113.9", true),
        ("203.0.114.1", false),
        ("198.51.100.7", true),
        ("198.51.100.8", false),
        ("2001:db8::1", true),
        ("2001:db9::1", false),
    ] {
        let call = Call {
            ip,
            ..Call::system()
        };
        assert_eq!(denied_by(&call.decide(&rules)).is_none(), allowed, "{ip}");
    }
    let github = Call {
        ip: "192.0.2.1",
        grant: grant("github"),
        ..Call::system()
    };
    assert_eq!(
        denied_by(&github.decide(&rules)),
        None,
        "only stripe's calls"
    );
    for bad in ["10.0.0.0/33", "2001:db8::/129", "not-an-ip", "10.0.0.0/x"] {
        let e = rules::compile(
            "0190aa00-0000-7000-8000-000000000002",
            &Layer::App,
            &RuleKind::IpAllow {
                ranges: vec![bad.into()],
            },
            &schema().unwrap(),
        );
        assert!(e.is_err(), "{bad}");
    }
}

#[test]
fn group_rules_need_the_users_group() {
    let finance = rule(
        "finance-only",
        "app",
        &RuleKind::Groups {
            any_of: vec!["finance".into(), "ops \"x\"".into()],
        },
    );
    let rules = [finance];
    let user = |groups: &[&str]| Call {
        actor: Actor::User {
            issuer: "https://idp.example.com".into(),
            subject: "ada".into(),
        },
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..Call::system()
    };
    assert_eq!(denied_by(&user(&["finance"]).decide(&rules)), None);
    assert_eq!(denied_by(&user(&["ops \"x\""]).decide(&rules)), None);
    assert_eq!(
        denied_by(&user(&["sales"]).decide(&rules)),
        Some("finance-only")
    );
    assert_eq!(
        denied_by(&Call::system().decide(&rules)),
        Some("finance-only")
    );
}

#[test]
fn time_windows_follow_the_zone_and_may_span_midnight() {
    let paris = |days: &[&str], start: &str, end: &str| {
        Window::of(
            &days.iter().map(|d| (*d).to_owned()).collect::<Vec<_>>(),
            start,
            end,
            "Europe/Paris",
        )
        .unwrap()
    };
    let office = paris(&["mon-fri"], "09:00", "18:00");
    let hour = 3_600_000;
    assert!(office.is_open(AT), "Monday 10:30 in Paris");
    assert!(!office.is_open(AT - 2 * hour), "08:30 in Paris");
    assert!(!office.is_open(AT + 8 * hour), "18:30 in Paris");
    assert!(!office.is_open(AT + 5 * 24 * hour), "Saturday");
    // Summer time: 2026-07-01 07:30Z is 09:30 in Paris (UTC+2), 06:30Z is 08:30.
    assert!(office.is_open(1_782_891_000_000));
    assert!(!office.is_open(1_782_891_000_000 - hour));
    let night = paris(&["mon"], "22:00", "06:00");
    assert!(night.is_open(AT + 12 * hour), "Monday 22:30");
    assert!(
        night.is_open(AT + 16 * hour),
        "Tuesday 02:30 belongs to Monday's night"
    );
    assert!(!night.is_open(AT + 36 * hour), "Tuesday 22:30");
    for (days, start, end, tz) in [
        (vec!["funday"], "09:00", "18:00", "Europe/Paris"),
        (vec!["mon"], "9:00", "18:00", "Europe/Paris"),
        (vec!["mon"], "09:00", "09:00", "Europe/Paris"),
        (vec!["mon"], "09:00", "25:00", "Europe/Paris"),
        (vec!["mon"], "09:00", "18:00", "Mars/Olympus"),
    ] {
        let days: Vec<String> = days.into_iter().map(str::to_owned).collect();
        assert!(
            Window::of(&days, start, end, tz).is_err(),
            "{days:?} {start} {end} {tz}"
        );
    }

    let rule = rule(
        "paris-office-hours",
        "provider:stripe",
        &RuleKind::TimeWindow {
            days: vec!["mon-fri".into()],
            start: "09:00".into(),
            end: "18:00".into(),
            time_zone: "Europe/Paris".into(),
        },
    );
    let rules = [rule];
    assert_eq!(denied_by(&Call::system().decide(&rules)), None);
    let late = Call {
        at: AT + 8 * hour,
        ..Call::system()
    };
    assert_eq!(denied_by(&late.decide(&rules)), Some("paris-office-hours"));
}

#[test]
fn a_policy_that_cannot_be_evaluated_denies_and_a_tampered_rule_forbids() {
    let overflow = rule(
        "overflows",
        "app",
        &RuleKind::Cedar {
            policy: "forbid (principal, action, resource) when { context.time.unix * 9223372036854775807 < 0 };".into(),
        },
    );
    match Call::system().decide(&[overflow]) {
        Verdict::Deny { rule_name, why, .. } => {
            assert_eq!(rule_name, "overflows");
            assert!(why.contains("could not be evaluated"), "{why}");
        }
        other @ (Verdict::Allow { .. } | Verdict::Hold { .. }) => {
            panic!("an erroring forbid must deny: {other:?}")
        }
    }
    let mut tampered = rule(
        "tampered",
        "app",
        &RuleKind::Methods {
            deny: vec!["DELETE".into()],
        },
    );
    tampered.cedar = "permit (principal, action, resource) when { true".into();
    assert_eq!(
        denied_by(&Call::system().decide(&[tampered])),
        Some("tampered")
    );
}

#[test]
fn a_call_over_a_rate_limit_is_refused_with_when_to_retry() {
    let limit = rule(
        "stripe-10-per-minute",
        "provider:stripe",
        &RuleKind::RateLimit {
            limit: 10,
            window_secs: 60,
            per: "grant".into(),
        },
    );
    let call = Call::system();
    let tags = BTreeMap::new();
    let facts = Facts {
        action: CallAction::Retrieve,
        actor: call.actor.clone(),
        agent: None,
        groups: &[],
        grant: &call.grant,
        method: "GET",
        url: "https://api.stripe.com/v1/customers",
        client_ip: "203.0.113.9".parse().unwrap(),
        caller: None,
        reason: None,
        tags: &tags,
        now: Timestamp::from_unix_millis(AT),
    };
    let compiled = compile_set(std::slice::from_ref(&limit));
    assert!(covers(&compiled.limits[0].1, &facts));
    assert_eq!(
        evaluate(&compiled, &schema().unwrap(), &facts, &Counted::default()),
        Verdict::Allow { rules: 1 }
    );
    let over = Counted {
        over: vec![limit.id.clone()],
        retry_after: HashMap::from([(limit.id.clone(), 17)]),
    };
    match evaluate(&compiled, &schema().unwrap(), &facts, &over) {
        Verdict::Deny {
            rule_name,
            retry_after,
            ..
        } => {
            assert_eq!(rule_name, "stripe-10-per-minute");
            assert_eq!(retry_after, Some(17));
        }
        other @ (Verdict::Allow { .. } | Verdict::Hold { .. }) => panic!("{other:?}"),
    }
    for (limit, window, per) in [
        (0, 60, "grant"),
        (1, 0, "grant"),
        (1, 86_401, "grant"),
        (1, 60, "app"),
    ] {
        assert!(
            Limit::of(limit, window, per).is_err(),
            "{limit} {window} {per}"
        );
    }
}

#[test]
fn layers_parse_strictly() {
    assert_eq!(Layer::parse("app").unwrap(), Layer::App);
    assert_eq!(
        Layer::parse("provider:github").unwrap(),
        Layer::Provider("github".into())
    );
    for bad in [
        "",
        "apps",
        "provider:",
        "grant:not-a-uuid",
        "agent:x",
        "team:1",
        "provider:a\"b",
    ] {
        assert!(Layer::parse(bad).is_err(), "{bad}");
    }
}

fn held_by(v: &Verdict) -> Option<(&str, u32)> {
    match v {
        Verdict::Hold {
            rule_name,
            ttl_secs,
            ..
        } => Some((rule_name, *ttl_secs)),
        Verdict::Allow { .. } | Verdict::Deny { .. } => None,
    }
}

#[test]
fn require_approval_holds_matching_proxy_calls_and_every_retrieve_it_covers() {
    let mail_send = rule(
        "mail-send-needs-approval",
        "provider:google",
        &RuleKind::RequireApproval {
            methods: vec!["post".into()],
            paths: vec!["/gmail/v1/users/*/messages/send".into()],
            ttl_secs: Some(600),
        },
    );
    let rules = [mail_send];
    let send = Call {
        grant: grant("google"),
        method: "POST",
        url: "https://gmail.googleapis.com/gmail/v1/users/me/messages/send",
        ..Call::system()
    };
    assert_eq!(
        held_by(&send.decide(&rules)),
        Some(("mail-send-needs-approval", 600))
    );
    let read = Call {
        method: "GET",
        url: "https://gmail.googleapis.com/gmail/v1/users/me/messages",
        ..Call {
            grant: grant("google"),
            ..Call::system()
        }
    };
    assert_eq!(read.decide(&rules), Verdict::Allow { rules: 1 });
    let other_path = Call {
        method: "POST",
        url: "https://gmail.googleapis.com/gmail/v1/users/me/drafts",
        ..Call {
            grant: grant("google"),
            ..Call::system()
        }
    };
    assert_eq!(other_path.decide(&rules), Verdict::Allow { rules: 1 });
    let retrieve = Call {
        action: CallAction::Retrieve,
        ..read
    };
    assert_eq!(
        held_by(&retrieve.decide(&rules)).map(|h| h.0),
        Some("mail-send-needs-approval"),
        "retrieved auth material is not bound to one request"
    );
    let other_provider = Call {
        action: CallAction::Retrieve,
        method: "POST",
        ..Call::system()
    };
    assert_eq!(other_provider.decide(&rules), Verdict::Allow { rules: 1 });
}

#[test]
fn a_refusal_wins_over_an_approval_and_the_default_deadline_is_an_hour() {
    let everything = rule(
        "all-writes",
        "app",
        &RuleKind::RequireApproval {
            methods: Vec::new(),
            paths: Vec::new(),
            ttl_secs: None,
        },
    );
    let no_delete = rule(
        "no-delete",
        "app",
        &RuleKind::Methods {
            deny: vec!["DELETE".into()],
        },
    );
    let rules = [everything, no_delete];
    assert_eq!(
        held_by(&Call::system().decide(&rules)),
        Some(("all-writes", rules::DEFAULT_APPROVAL_TTL_SECS))
    );
    let delete = Call {
        method: "DELETE",
        ..Call::system()
    };
    assert_eq!(denied_by(&delete.decide(&rules)), Some("no-delete"));
    for bad in [
        RuleKind::RequireApproval {
            methods: vec!["P0ST".into()],
            paths: Vec::new(),
            ttl_secs: None,
        },
        RuleKind::RequireApproval {
            methods: Vec::new(),
            paths: vec!["send".into()],
            ttl_secs: None,
        },
        RuleKind::RequireApproval {
            methods: Vec::new(),
            paths: vec!["/a\"b".into()],
            ttl_secs: None,
        },
        RuleKind::RequireApproval {
            methods: Vec::new(),
            paths: Vec::new(),
            ttl_secs: Some(4),
        },
    ] {
        assert!(
            rules::compile("x", &Layer::App, &bad, &schema().unwrap()).is_err(),
            "{bad:?}"
        );
    }
}
