//! Structured rules → Cedar: checking what an operator asks for and writing the one `forbid`
//! policy each rule is. Custom rules are parsed, held to `forbid`, scoped to their layer and
//! validated (strict mode) against the schema.
//!
//! Must never: put an unchecked string into policy text (names and ids are checked, strings
//! escaped), or accept a custom `permit` (rules only restrict).

use std::net::IpAddr;

use cedar_policy::{Effect, Policy, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use tessera_proto::policy::RuleKind;

use super::PolicyError;

/// What a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layer {
    /// Every call of the app.
    App,
    /// Calls with grants of one provider.
    Provider(String),
    /// Calls with one grant.
    Grant(String),
    /// Calls an agent makes.
    Agent(String),
}

impl Layer {
    /// Parses `app`, `provider:ID`, `grant:UUID` or `agent:UUID`.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let bad = || {
            PolicyError::Invalid(format!(
                "applies_to {text:?} must be app, provider:ID, grant:ID or agent:ID"
            ))
        };
        if text == "app" {
            return Ok(Self::App);
        }
        let (kind, id) = text.split_once(':').ok_or_else(bad)?;
        let id_ok = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !id_ok {
            return Err(bad());
        }
        let uuid = || {
            id.parse::<uuid::Uuid>()
                .map(|u| u.to_string())
                .map_err(|_| PolicyError::Invalid(format!("{kind} {id:?} is not an id")))
        };
        match kind {
            "provider" => Ok(Self::Provider(id.to_owned())),
            "grant" => Ok(Self::Grant(uuid()?)),
            "agent" => Ok(Self::Agent(uuid()?)),
            _ => Err(bad()),
        }
    }

    /// The layer of a stored `(layer, target)` pair.
    pub fn from_parts(layer: &str, target: &str) -> Option<Self> {
        match layer {
            "app" => Some(Self::App),
            "provider" => Some(Self::Provider(target.to_owned())),
            "grant" => Some(Self::Grant(target.to_owned())),
            "agent" => Some(Self::Agent(target.to_owned())),
            _ => None,
        }
    }

    /// The stored `(layer, target)` pair.
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            Self::App => ("app", ""),
            Self::Provider(id) => ("provider", id),
            Self::Grant(id) => ("grant", id),
            Self::Agent(id) => ("agent", id),
        }
    }

    /// The text form (`app`, `provider:ID`, …).
    pub fn text(&self) -> String {
        match self.parts() {
            ("app", _) => "app".to_owned(),
            (kind, id) => format!("{kind}:{id}"),
        }
    }

    /// The Cedar condition that selects the layer's calls (`true` for the app).
    fn condition(&self) -> String {
        match self {
            Self::App => "true".to_owned(),
            Self::Provider(id) => format!("resource in Provider::{}", cedar_str(id)),
            Self::Grant(id) => format!("resource == Grant::{}", cedar_str(id)),
            Self::Agent(id) => format!("principal == Agent::{}", cedar_str(id)),
        }
    }
}

/// A Cedar string literal of `s` (quotes and backslashes escaped; control characters are
/// refused before text gets here).
pub fn cedar_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn no_control(what: &str, s: &str) -> Result<(), PolicyError> {
    if s.is_empty() || s.len() > 256 || s.chars().any(char::is_control) {
        return Err(PolicyError::Invalid(format!(
            "{what} {s:?} must be 1 to 256 characters without control characters"
        )));
    }
    Ok(())
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The ISO weekday (1 = Monday) of a day name.
fn day_number(name: &str) -> Option<i8> {
    DAYS.iter()
        .position(|d| d.eq_ignore_ascii_case(name))
        .and_then(|i| i8::try_from(i + 1).ok())
}

/// Days as given (`mon`, `sat`, or ranges like `mon-fri`), as sorted unique ISO weekdays.
pub fn parse_days(days: &[String]) -> Result<Vec<i8>, PolicyError> {
    let bad = |d: &str| {
        PolicyError::Invalid(format!(
            "day {d:?} is not one of mon tue wed thu fri sat sun (or a range like mon-fri)"
        ))
    };
    let mut out = Vec::new();
    for d in days {
        match d.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (
                    day_number(a.trim()).ok_or_else(|| bad(d))?,
                    day_number(b.trim()).ok_or_else(|| bad(d))?,
                );
                let mut day = a;
                loop {
                    out.push(day);
                    if day == b {
                        break;
                    }
                    day = day % 7 + 1;
                }
            }
            None => out.push(day_number(d.trim()).ok_or_else(|| bad(d))?),
        }
    }
    if out.is_empty() {
        return Err(PolicyError::Invalid(
            "a time window needs at least one day".into(),
        ));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Minutes since midnight of `HH:MM`.
pub fn parse_time(text: &str) -> Result<i16, PolicyError> {
    let bad = || PolicyError::Invalid(format!("time {text:?} must be HH:MM (00:00 to 24:00)"));
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (i16, i16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 24 || m > 59 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// A time window, checked: the host decides whether it is open at an instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// ISO weekdays the window opens on.
    pub days: Vec<i8>,
    /// Opening minute of the day.
    pub start: i16,
    /// Closing minute of the day (exclusive); below `start`, the window spans midnight.
    pub end: i16,
    /// The IANA time zone.
    pub time_zone: String,
}

impl Window {
    /// Checks a `time_window` rule's settings.
    pub fn of(
        days: &[String],
        start: &str,
        end: &str,
        time_zone: &str,
    ) -> Result<Self, PolicyError> {
        let window = Self {
            days: parse_days(days)?,
            start: parse_time(start)?,
            end: parse_time(end)?,
            time_zone: time_zone.to_owned(),
        };
        if window.start == window.end {
            return Err(PolicyError::Invalid(
                "a time window's start and end must differ".into(),
            ));
        }
        jiff::tz::TimeZone::get(time_zone).map_err(|_| {
            PolicyError::Invalid(format!(
                "time zone {time_zone:?} is not an IANA time zone (like Europe/Paris)"
            ))
        })?;
        Ok(window)
    }

    /// Whether the window is open at `unix_millis`.
    pub fn is_open(&self, unix_millis: i64) -> bool {
        let Ok(at) = jiff::Timestamp::from_millisecond(unix_millis) else {
            return false;
        };
        let Ok(local) = at.in_tz(&self.time_zone) else {
            return false;
        };
        let day = local.weekday().to_monday_one_offset();
        let minute = i16::from(local.hour()) * 60 + i16::from(local.minute());
        if self.start < self.end {
            self.days.contains(&day) && (self.start..self.end).contains(&minute)
        } else {
            // Spans midnight: the part after midnight belongs to the previous day's window.
            let yesterday = if day == 1 { 7 } else { day - 1 };
            (self.days.contains(&day) && minute >= self.start)
                || (self.days.contains(&yesterday) && minute < self.end)
        }
    }
}

/// What a rate-limit rule counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Per {
    /// Each grant has its own count.
    Grant,
    /// Each agent has its own count (calls without an agent are not counted).
    Agent,
}

/// A rate limit, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Calls allowed per window.
    pub limit: u32,
    /// The window, in milliseconds.
    pub window_ms: i64,
    /// What is counted.
    pub per: Per,
}

impl Limit {
    /// Checks a `rate_limit` rule's settings.
    pub fn of(limit: u32, window_secs: u32, per: &str) -> Result<Self, PolicyError> {
        if limit == 0 {
            return Err(PolicyError::Invalid(
                "a rate limit must allow at least one call (to refuse every call, use a \
                 custom forbid rule)"
                    .into(),
            ));
        }
        if !(1..=86_400).contains(&window_secs) {
            return Err(PolicyError::Invalid(
                "a rate limit's window_secs must be 1 to 86400 (a day)".into(),
            ));
        }
        let per = match per {
            "grant" => Per::Grant,
            "agent" => Per::Agent,
            other => {
                return Err(PolicyError::Invalid(format!(
                    "a rate limit counts per \"grant\" or per \"agent\", not {other:?}"
                )));
            }
        };
        Ok(Self {
            limit,
            window_ms: i64::from(window_secs) * 1000,
            per,
        })
    }
}

/// An IP address or CIDR range, checked; returned in the form Cedar's `ip()` takes.
pub fn parse_range(text: &str) -> Result<String, PolicyError> {
    let bad = || {
        PolicyError::Invalid(format!(
            "{text:?} is not an IPv4 or IPv6 address or CIDR range (like 203.0.113.0/24)"
        ))
    };
    let (addr, prefix) = match text.trim().split_once('/') {
        Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
        None => (text.trim(), None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match prefix {
        Some(p) if p > max => Err(bad()),
        Some(p) => Ok(format!("{ip}/{p}")),
        None => Ok(ip.to_string()),
    }
}

/// Checks a rule and writes its Cedar policy (for a time window, also returns the window
/// the host evaluates). `id` is the rule id the policy is annotated with.
pub fn compile(
    id: &str,
    layer: &Layer,
    rule: &RuleKind,
    schema: &Schema,
) -> Result<(String, Option<Window>), PolicyError> {
    let scope = "forbid (principal, action, resource)";
    let when = layer.condition();
    let (text, window) = match rule {
        RuleKind::TimeWindow {
            days,
            start,
            end,
            time_zone,
        } => {
            let window = Window::of(days, start, end, time_zone)?;
            (
                format!(
                    "{scope}\nwhen {{ {when} }}\nunless {{ context.open_windows.contains({}) }};",
                    cedar_str(id)
                ),
                Some(window),
            )
        }
        RuleKind::IpAllow { ranges } => {
            if ranges.is_empty() {
                return Err(PolicyError::Invalid(
                    "an IP allow-list needs a range".into(),
                ));
            }
            let tests: Vec<String> = ranges
                .iter()
                .map(|r| {
                    parse_range(r)
                        .map(|r| format!("context.client_ip.isInRange(ip({}))", cedar_str(&r)))
                })
                .collect::<Result<_, _>>()?;
            (
                format!(
                    "{scope}\nwhen {{ {when} }}\nunless {{ {} }};",
                    tests.join(" || ")
                ),
                None,
            )
        }
        RuleKind::Groups { any_of } => {
            if any_of.is_empty() {
                return Err(PolicyError::Invalid("a group rule needs a group".into()));
            }
            for g in any_of {
                no_control("group", g)?;
            }
            let list: Vec<String> = any_of.iter().map(|g| cedar_str(g)).collect();
            (
                format!(
                    "{scope}\nwhen {{ {when} }}\nunless {{ context.groups.containsAny([{}]) }};",
                    list.join(", ")
                ),
                None,
            )
        }
        RuleKind::Methods { deny } => {
            if deny.is_empty() {
                return Err(PolicyError::Invalid("a method rule needs a method".into()));
            }
            let list: Vec<String> = deny
                .iter()
                .map(|m| check_method(m).map(|m| cedar_str(&m)))
                .collect::<Result<_, _>>()?;
            (
                format!(
                    "{scope}\nwhen {{ {when} && [{}].contains(context.method) }};",
                    list.join(", ")
                ),
                None,
            )
        }
        RuleKind::RateLimit {
            limit,
            window_secs,
            per,
        } => {
            Limit::of(*limit, *window_secs, per)?;
            (
                format!(
                    "{scope}\nwhen {{ {when} && context.over_limit.contains({}) }};",
                    cedar_str(id)
                ),
                None,
            )
        }
        RuleKind::RequireApproval {
            methods,
            paths,
            ttl_secs,
        } => (approval_policy(&when, methods, paths, *ttl_secs)?, None),
        RuleKind::Cedar { policy } => (custom(policy, &when)?, None),
    };
    let text = format!("@id({})\n{text}", cedar_str(id));
    validate(id, &text, schema)?;
    Ok((text, window))
}

/// How long a person has to decide an approval when its rule does not say: an hour.
pub const DEFAULT_APPROVAL_TTL_SECS: u32 = 3600;
/// The shortest approval deadline a rule may set: five seconds.
pub const MIN_APPROVAL_TTL_SECS: u32 = 5;
/// The longest approval deadline a rule may set: a week.
pub const MAX_APPROVAL_TTL_SECS: u32 = 7 * 24 * 3600;

/// The Cedar policy of a require-approval rule. It is put in the app's *approval* set (a
/// `forbid` there means "hold for a person", not "refuse"): it matches every retrieve call
/// its layer covers (retrieved auth material is not bound to one request) and the proxy
/// calls whose method and path match.
fn approval_policy(
    when: &str,
    methods: &[String],
    paths: &[String],
    ttl_secs: Option<u32>,
) -> Result<String, PolicyError> {
    if let Some(t) = ttl_secs
        && !(MIN_APPROVAL_TTL_SECS..=MAX_APPROVAL_TTL_SECS).contains(&t)
    {
        return Err(PolicyError::Invalid(format!(
            "ttl_secs must be between {MIN_APPROVAL_TTL_SECS} and {MAX_APPROVAL_TTL_SECS}"
        )));
    }
    let mut tests = Vec::new();
    if !methods.is_empty() {
        let list: Vec<String> = methods
            .iter()
            .map(|m| check_method(m).map(|m| cedar_str(&m)))
            .collect::<Result<_, _>>()?;
        tests.push(format!("[{}].contains(context.method)", list.join(", ")));
    }
    if !paths.is_empty() {
        let mut alternatives = Vec::new();
        for p in paths {
            let ok = p.starts_with('/')
                && p.len() <= 512
                && !p.contains(['"', '\\'])
                && !p.chars().any(char::is_control);
            if !ok {
                return Err(PolicyError::Invalid(format!(
                    "path pattern {p:?} must start with / and hold no quote, backslash or control character"
                )));
            }
            alternatives.push(format!("context.path like {}", cedar_str(p)));
        }
        tests.push(format!("({})", alternatives.join(" || ")));
    }
    let matches = if tests.is_empty() {
        "true".to_owned()
    } else {
        tests.join(" && ")
    };
    Ok(format!(
        "forbid (principal, action, resource)\nwhen {{ {when} && (action == Action::\"retrieve\" || ({matches})) }};"
    ))
}

/// An HTTP method name, upper-cased.
fn check_method(m: &str) -> Result<String, PolicyError> {
    if m.is_empty() || m.len() > 16 || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(PolicyError::Invalid(format!("{m:?} is not an HTTP method")));
    }
    Ok(m.to_ascii_uppercase())
}

/// A custom policy, held to one `forbid` and scoped to its layer (an extra `when`).
fn custom(policy: &str, when: &str) -> Result<String, PolicyError> {
    let parsed = Policy::parse(None, policy)
        .map_err(|e| PolicyError::Invalid(format!("the Cedar policy does not parse: {e}")))?;
    if parsed.effect() != Effect::Forbid {
        return Err(PolicyError::Invalid(
            "a custom rule must be a forbid policy: rules only restrict, never permit".into(),
        ));
    }
    if parsed.annotations().next().is_some() {
        return Err(PolicyError::Invalid(
            "leave annotations out of a custom rule: the host names it by the rule".into(),
        ));
    }
    let body = policy.trim().trim_end_matches(';').trim_end();
    Ok(if when == "true" {
        format!("{body};")
    } else {
        format!("{body}\nwhen {{ {when} }};")
    })
}

/// Parses `text` as one policy and validates it (strict) against `schema`.
fn validate(id: &str, text: &str, schema: &Schema) -> Result<(), PolicyError> {
    let policy = Policy::parse(Some(PolicyId::new(id)), text)
        .map_err(|e| PolicyError::Invalid(format!("the Cedar policy does not parse: {e}")))?;
    let mut set = PolicySet::new();
    set.add(policy)
        .map_err(|e| PolicyError::Invalid(format!("the Cedar policy is not usable: {e}")))?;
    let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
    if result.validation_passed() {
        Ok(())
    } else {
        let errors: Vec<String> = result
            .validation_errors()
            .map(ToString::to_string)
            .collect();
        Err(PolicyError::Invalid(format!(
            "the Cedar policy does not fit the schema (GET /v1/policy/schema): {}",
            errors.join("; ")
        )))
    }
}
