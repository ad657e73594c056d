//! Sizes of values lifted out of a guest, for the output cap.
//!
//! Owns only arithmetic over lifted values; it must never log or copy them (they carry
//! credentials).

use super::types::{
    Classification, Connected, Credential, HttpRequest, ProviderError, ProviderInfo, Step,
};

/// Approximate heap size of a lifted value, in bytes.
pub(crate) trait OutputSize {
    fn output_size(&self) -> usize;
}

fn pairs(p: &[(String, String)]) -> usize {
    p.iter()
        .map(|(k, v)| k.len() + v.len() + 2 * size_of::<String>())
        .sum()
}

fn strings(s: &[String]) -> usize {
    s.iter().map(|s| s.len() + size_of::<String>()).sum()
}

impl OutputSize for HttpRequest {
    fn output_size(&self) -> usize {
        self.method.len() + self.url.len() + pairs(&self.headers) + self.body.len()
    }
}

impl OutputSize for ProviderError {
    fn output_size(&self) -> usize {
        match self {
            ProviderError::ReauthorizeRequired(s)
            | ProviderError::AccessDenied(s)
            | ProviderError::InvalidInput(s)
            | ProviderError::HostNotAllowed(s)
            | ProviderError::MalformedResponse(s)
            | ProviderError::Unsupported(s) => s.len(),
            ProviderError::Upstream(u) => u.code.len() + u.description.len(),
        }
    }
}

impl OutputSize for Credential {
    fn output_size(&self) -> usize {
        pairs(&self.secrets) + pairs(&self.metadata) + strings(&self.scopes)
    }
}

impl OutputSize for Connected {
    fn output_size(&self) -> usize {
        self.credential.output_size() + self.account_label.len()
    }
}

impl OutputSize for Step {
    fn output_size(&self) -> usize {
        match self {
            Step::Send(o) => o.request.output_size() + o.state.len(),
            Step::Redirect(r) => r.url.len() + r.state.len(),
            Step::Done(c) => c.output_size(),
            Step::Fail(e) => e.output_size(),
        }
    }
}

impl OutputSize for Classification {
    fn output_size(&self) -> usize {
        match self {
            Classification::InsufficientScope(s) => strings(s),
            _ => 0,
        }
    }
}

impl OutputSize for ProviderInfo {
    fn output_size(&self) -> usize {
        let fields = |f: &[super::types::Field]| -> usize {
            f.iter()
                .map(|f| {
                    f.name.len()
                        + f.label.len()
                        + f.description.len()
                        + f.example.as_ref().map_or(0, String::len)
                })
                .sum()
        };
        self.id.len()
            + self.display_name.len()
            + self.version.len()
            + strings(&self.categories)
            + strings(&self.default_scopes)
            + self.scope_separator.len()
            + self
                .scopes
                .iter()
                .map(|s| s.name.len() + s.label.len())
                .sum::<usize>()
            + strings(&self.allowed_hosts)
            + fields(&self.secret_fields)
            + fields(&self.connection_params)
            + self.logo_url.as_ref().map_or(0, String::len)
            + self.docs_url.as_ref().map_or(0, String::len)
    }
}

impl<T: OutputSize, E: OutputSize> OutputSize for Result<T, E> {
    fn output_size(&self) -> usize {
        match self {
            Ok(t) => t.output_size(),
            Err(e) => e.output_size(),
        }
    }
}

impl<T: OutputSize> OutputSize for Option<T> {
    fn output_size(&self) -> usize {
        self.as_ref().map_or(0, OutputSize::output_size)
    }
}
